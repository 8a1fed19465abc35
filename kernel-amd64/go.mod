module github.com/supermachine-go/supermachine-kernel/kernel-amd64

go 1.26
