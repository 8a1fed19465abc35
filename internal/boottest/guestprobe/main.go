// Command guestprobe exercises kernel features that busybox has no applet
// for. The workload boot tests copy it into a guest and run it there;
// it is its own module so that its netlink libraries stay out of the
// dependency graph of the supermachine-kernel module.
//
//	guestprobe netns-bridge NS BRIDGE VETH PEER HOSTCIDR PEERCIDR
//	guestprobe nft-masq TABLE
//	guestprobe loopmount IMAGE DIR FSTYPE
//	guestprobe setcap PATH
//	guestprobe getxattr PATH NAME
//	guestprobe keyring NAME
//	guestprobe arch
//
// Each prints what it did and exits 0, or prints the error and exits 1.
package main

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: guestprobe netns-bridge|nft-masq|loopmount|setcap|getxattr|keyring|arch ARGS"))
	}
	args := os.Args[2:]
	var err error
	switch cmd := os.Args[1]; {
	case cmd == "netns-bridge" && len(args) == 6:
		err = netnsBridge(args[0], args[1], args[2], args[3], args[4], args[5])
	case cmd == "nft-masq" && len(args) == 1:
		err = nftMasq(args[0])
	case cmd == "loopmount" && len(args) == 3:
		err = loopMount(args[0], args[1], args[2])
	case cmd == "setcap" && len(args) == 1:
		err = setCap(args[0])
	case cmd == "getxattr" && len(args) == 2:
		err = getXattr(args[0], args[1])
	case cmd == "keyring" && len(args) == 1:
		var id int
		if id, err = unix.KeyctlJoinSessionKeyring(args[0]); err == nil {
			fmt.Printf("keyring: joined session keyring %s, serial %d\n", args[0], id)
		}
	case cmd == "arch" && len(args) == 0:
		fmt.Println(runtime.GOARCH)
	default:
		err = fmt.Errorf("unknown command or wrong arguments: %q", os.Args[1:])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "guestprobe:", err)
	os.Exit(1)
}

// netnsBridge creates the network namespace NS (bind-mounted at
// /run/netns/NS, as ip-netns does), a bridge with HOSTCIDR, and a veth
// pair whose first end is a bridge port and whose peer, with PEERCIDR,
// is moved into NS.
func netnsBridge(ns, bridge, veth, peer, hostCIDR, peerCIDR string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	if err := os.MkdirAll("/run/netns", 0o755); err != nil {
		return err
	}
	pin := filepath.Join("/run/netns", ns)
	if err := os.WriteFile(pin, nil, 0o444); err != nil {
		return err
	}
	newNS, err := netns.New() // also switches this thread into it
	if err != nil {
		return fmt.Errorf("new netns: %w", err)
	}
	defer newNS.Close()
	self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	if err := unix.Mount(self, pin, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", self, pin, err)
	}
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("back to the first netns: %w", err)
	}

	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridge}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s: %w", bridge, err)
	}
	if err := addrUp(nil, bridge, hostCIDR); err != nil {
		return err
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: veth, MasterIndex: br.Index}, PeerName: peer}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("add veth %s/%s: %w", veth, peer, err)
	}
	if err := addrUp(nil, veth, ""); err != nil {
		return err
	}
	p, err := netlink.LinkByName(peer)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetNsFd(p, int(newNS)); err != nil {
		return fmt.Errorf("move %s into %s: %w", peer, ns, err)
	}
	h, err := netlink.NewHandleAt(newNS)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := addrUp(h, "lo", ""); err != nil {
		return err
	}
	if err := addrUp(h, peer, peerCIDR); err != nil {
		return err
	}
	fmt.Printf("netns %s: %s (%s) -- %s on bridge %s (%s)\n", ns, peer, peerCIDR, veth, bridge, hostCIDR)
	return nil
}

// addrUp adds cidr (if any) to the link and sets it up, through h or, if
// h is nil, in the current namespace.
func addrUp(h *netlink.Handle, name, cidr string) error {
	if h == nil {
		var err error
		if h, err = netlink.NewHandle(); err != nil {
			return err
		}
		defer h.Close()
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	if cidr != "" {
		a, err := netlink.ParseAddr(cidr)
		if err != nil {
			return err
		}
		if err := h.AddrAdd(l, a); err != nil {
			return fmt.Errorf("address %s on %s: %w", cidr, name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// nftMasq adds an ip table with a NAT postrouting chain holding a
// masquerade rule, over nf_tables netlink, and reads it back.
func nftMasq(table string) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: table})
	ch := c.AddChain(&nftables.Chain{
		Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{&expr.Masq{}}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("add table %s: %w", table, err)
	}
	rules, err := c.GetRules(t, ch)
	if err != nil {
		return fmt.Errorf("list rules: %w", err)
	}
	for _, r := range rules {
		for _, e := range r.Exprs {
			if _, ok := e.(*expr.Masq); ok {
				fmt.Printf("nft: table ip %s chain postrouting (nat) rule masquerade\n", table)
				return nil
			}
		}
	}
	return fmt.Errorf("table %s: read back %d rules, none with masquerade", table, len(rules))
}

// loopMount mounts IMAGE on DIR the way util-linux's mount -o loop does:
// the loop device stays open for writing while mount(2) runs.
func loopMount(image, dir, fstype string) error {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer ctl.Close()
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
	}
	dev := fmt.Sprintf("/dev/loop%d", n)
	loop, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer loop.Close()
	back, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer back.Close()
	cfg := unix.LoopConfig{Fd: uint32(back.Fd())}
	cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
	if err := unix.IoctlLoopConfigure(int(loop.Fd()), &cfg); err != nil {
		return fmt.Errorf("LOOP_CONFIGURE %s: %w", dev, err)
	}
	if err := unix.Mount(dev, dir, fstype, 0, ""); err != nil {
		return fmt.Errorf("mount %s (%s, open for writing) on %s: %w", dev, image, dir, err)
	}
	fmt.Printf("loopmount: %s on %s via %s\n", image, dir, dev)
	return nil
}

// setCap sets security.capability to a version 2 capability set with
// CAP_NET_RAW permitted and effective (what `setcap cap_net_raw+ep` writes).
func setCap(path string) error {
	var v [20]byte
	const revision2, effective = 0x02000000, 0x000001
	binary.LittleEndian.PutUint32(v[0:], revision2|effective)
	binary.LittleEndian.PutUint32(v[4:], 1<<unix.CAP_NET_RAW) // permitted, low word
	if err := unix.Setxattr(path, "security.capability", v[:], 0); err != nil {
		return fmt.Errorf("setxattr security.capability on %s: %w", path, err)
	}
	fmt.Printf("setcap: %s %s\n", path, hex.EncodeToString(v[:]))
	return nil
}

func getXattr(path, name string) error {
	buf := make([]byte, 256)
	n, err := unix.Getxattr(path, name, buf)
	if err != nil {
		return fmt.Errorf("getxattr %s on %s: %w", name, path, err)
	}
	fmt.Println(strings.TrimSpace(hex.EncodeToString(buf[:n])))
	return nil
}
