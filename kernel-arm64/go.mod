module github.com/supermachine-go/supermachine-kernel/kernel-arm64

go 1.26
