//go:build linux

package agent_test

import (
	"errors"
	"io/fs"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/supermachine-go/supermachine-kernel/agent"
	"github.com/supermachine-go/supermachine-kernel/agent/server"
)

func TestControl(t *testing.T) {
	clock := make(chan time.Time, 1)
	power := make(chan bool, 2)
	c := dial(t, startServer(t, server.Config{
		SetClockHook: func(t time.Time) error { clock <- t; return nil },
		PowerHook:    func(reboot bool) error { power <- reboot; return nil },
	}))
	ctx := testCtx(t)
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := c.Version(ctx)
	if err != nil || v != agent.Version {
		t.Fatalf("Version = %q, %v", v, err)
	}
	in, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if in.AgentVersion != agent.Version || in.ProtocolVersion != 1 || in.KernelRelease == "" ||
		in.Arch != runtime.GOARCH || in.Uptime <= 0 || in.MemTotal == 0 || in.MemAvailable == 0 || in.Pid != os.Getpid() {
		t.Fatalf("Info = %+v", in)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	want := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := c.SetTime(ctx, want); err != nil {
		t.Fatal(err)
	}
	if got := <-clock; !got.Equal(want) {
		t.Fatalf("clock set to %v", got)
	}
	if err := c.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Reboot(ctx); err != nil {
		t.Fatal(err)
	}
	if a, b := <-power, <-power; a == b {
		t.Fatalf("power hooks: %v %v", a, b)
	}
}

func TestPowerOffRefusedWhenNotPID1(t *testing.T) {
	c := newClient(t)
	err := c.PowerOff(testCtx(t))
	var ae *agent.Error
	if !errors.As(err, &ae) || ae.Code != "not_permitted" || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("PowerOff = %v", err)
	}
	if err := c.Reboot(testCtx(t)); err == nil {
		t.Fatal("Reboot accepted")
	}
}
