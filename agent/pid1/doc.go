// Package pid1 holds what the supermachine agent must do when it runs as
// PID 1 inside a guest: mount the filesystems a container expects
// ([MountAll]), bring up the loopback interface ([LoopbackUp]), reap every
// zombie while keeping the exit statuses of its own children straight
// ([Reaper]), read its configuration from the kernel command line
// ([ParseCmdline]), and never exit: on a fatal error it logs to the console
// and powers the machine off ([Fatal], [PowerOff]).
//
// The package is Linux-only and has no dependencies beyond golang.org/x/sys.
package pid1
