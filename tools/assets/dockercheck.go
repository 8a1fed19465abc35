package main

import (
	"fmt"
	"sort"
	"strings"
)

// Docker's kernel checklist, as data: the flags of moby's
// contrib/check-config.sh at commit 00148c88eaeb4c9fe2652002df19d1756b5983a5
// (github.com/moby/moby), which checks more than the script of Docker
// 20.10.24 that Debian 12's docker.io ships. The script's kernel-version
// conditions are evaluated for Linux 6.12: DEVPTS_MULTIPLE_INSTANCES
// (before 4.8), NF_NAT_IPV4 (up to 5.1), NF_NAT_NEEDED (up to 5.2),
// MEMCG_SWAP_ENABLED (up to 5.8), MEMCG_KMEM (up to 4.5),
// RESOURCE_COUNTERS (up to 3.18), IOSCHED_CFQ and CFQ_GROUP_IOSCHED
// (before 5.0) and INET_XFRM_MODE_TRANSPORT (up to 5.3) do not apply. The
// flags it checks only under cgroup v1 are checked here too (a guest may
// boot either hierarchy). The ext3 flags are checked because
// EXT4_USE_FOR_EXT2 is off. Its LEGACY_VSYSCALL report is advice, not a
// check (x86-64 has LEGACY_VSYSCALL_XONLY, the kernel's default), and its
// runtime checks (cgroup mounts, AppArmor tools, /dev/zfs, the keys limit)
// are not about the kernel configuration and are left out.
var (
	// dockerNecessary is the script's "Generally Necessary" list.
	dockerNecessary = []string{
		"NAMESPACES", "NET_NS", "PID_NS", "IPC_NS", "UTS_NS",
		"CGROUPS", "CGROUP_SCHED",
		"KEYS",
		"VETH", "BRIDGE", "BRIDGE_NETFILTER",
		"IP_NF_FILTER", "IP_NF_MANGLE", "IP_NF_TARGET_MASQUERADE",
		"IP6_NF_FILTER", "IP6_NF_MANGLE", "IP6_NF_TARGET_MASQUERADE",
		"NETFILTER_XT_MATCH_ADDRTYPE", "NETFILTER_XT_MATCH_CONNTRACK", "NETFILTER_XT_MATCH_IPVS",
		"NETFILTER_XT_MARK",
		"IP_NF_RAW", "IP_NF_NAT", "NF_NAT",
		"IP6_NF_RAW", "IP6_NF_NAT",
		"POSIX_MQUEUE",
		// cgroup v1 only
		"CGROUP_FREEZER", "CGROUP_DEVICE", "CPUSETS", "CGROUP_CPUACCT", "MEMCG",
		// device control under cgroup v2 (kernels 4.15 and later)
		"CGROUP_BPF",
	}
	// dockerOptional is the script's "Optional Features" list, storage
	// and network drivers included.
	dockerOptional = []string{
		"USER_NS", "SECCOMP", "SECCOMP_FILTER",
		"CGROUP_PIDS", "CGROUP_HUGETLB", // cgroup v1 only
		"MEMCG_SWAP",
		"BLK_CGROUP", "BLK_DEV_THROTTLING", "CGROUP_PERF",
		"NET_CLS_CGROUP", "CGROUP_NET_PRIO",
		"CFS_BANDWIDTH", "FAIR_GROUP_SCHED",
		"IP_NF_TARGET_REDIRECT", "IP_VS", "IP_VS_NFCT", "IP_VS_PROTO_TCP", "IP_VS_PROTO_UDP", "IP_VS_RR",
		"SECURITY_SELINUX", "SECURITY_APPARMOR",
		"EXT3_FS", "EXT3_FS_XATTR", "EXT3_FS_POSIX_ACL", "EXT3_FS_SECURITY",
		"EXT4_FS", "EXT4_FS_POSIX_ACL", "EXT4_FS_SECURITY",
		"VXLAN", "BRIDGE_VLAN_FILTERING",
		"CRYPTO", "CRYPTO_AEAD", "CRYPTO_GCM", "CRYPTO_SEQIV", "CRYPTO_GHASH",
		"XFRM", "XFRM_USER", "XFRM_ALGO", "INET_ESP", "NETFILTER_XT_MATCH_BPF",
		"IPVLAN", "MACVLAN", "DUMMY",
		"NF_NAT_FTP", "NF_CONNTRACK_FTP", "NF_NAT_TFTP", "NF_CONNTRACK_TFTP",
		"BTRFS_FS", "BTRFS_FS_POSIX_ACL", "OVERLAY_FS",
	}
	// dockerOmitted names each optional flag the kernels leave out, and
	// why (tools/kernel/POLICY.md says the same).
	dockerOmitted = map[string]string{
		"MEMCG_SWAP":             "gone since Linux 6.1 (swap accounting is part of MEMCG), and the guests have no swap",
		"CGROUP_PERF":            "no perf profiling inside the guests",
		"NET_CLS_CGROUP":         "cgroup v1 network classifier; cgroup v2 attaches BPF programs",
		"CGROUP_NET_PRIO":        "cgroup v1 network priority; cgroup v2 attaches BPF programs",
		"SECURITY_SELINUX":       "no security modules in the guest kernel: the VM is the isolation boundary, and an LSM costs boot time and memory",
		"SECURITY_APPARMOR":      "no security modules in the guest kernel: the VM is the isolation boundary, and an LSM costs boot time and memory",
		"EXT3_FS":                "ext3 volumes mount with the ext4 driver (-t ext4)",
		"EXT3_FS_XATTR":          "no such option in Linux 6.12; ext3 is ext4's job",
		"EXT3_FS_POSIX_ACL":      "ext3 volumes mount with the ext4 driver, which has ACLs",
		"EXT3_FS_SECURITY":       "ext3 volumes mount with the ext4 driver, which has security xattrs",
		"CRYPTO_AEAD":            "Docker Swarm's encrypted overlay (IPsec) only; WireGuard covers VPNs",
		"CRYPTO_GCM":             "Docker Swarm's encrypted overlay (IPsec) only",
		"CRYPTO_SEQIV":           "Docker Swarm's encrypted overlay (IPsec) only",
		"CRYPTO_GHASH":           "Docker Swarm's encrypted overlay (IPsec) only",
		"XFRM":                   "Docker Swarm's encrypted overlay (IPsec) only",
		"XFRM_USER":              "Docker Swarm's encrypted overlay (IPsec) only",
		"XFRM_ALGO":              "Docker Swarm's encrypted overlay (IPsec) only",
		"INET_ESP":               "Docker Swarm's encrypted overlay (IPsec) only",
		"NETFILTER_XT_MATCH_BPF": "Docker Swarm's encrypted overlay (IPsec) only",
		"BTRFS_FS":               "storage driver other than overlay2; overlayfs is built in",
		"BTRFS_FS_POSIX_ACL":     "storage driver other than overlay2; overlayfs is built in",
	}
)

// dockerConfigReport is what Docker's check-config.sh would say about a
// kernel config.
type dockerConfigReport struct {
	Necessary, Optional int      // flags checked
	MissingNecessary    []string // "Generally Necessary" flags not set
	MissingOptional     []string // optional flags not set (omitted or not)
}

// dockerCheckConfig evaluates Docker's list against the text of a kernel
// .config: a flag is set if it is =y or =m, as in check-config.sh.
func dockerCheckConfig(config string) dockerConfigReport {
	set := map[string]bool{}
	for _, l := range strings.Split(config, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && strings.HasPrefix(k, "CONFIG_") && (v == "y" || v == "m") {
			set[strings.TrimPrefix(k, "CONFIG_")] = true
		}
	}
	r := dockerConfigReport{Necessary: len(dockerNecessary), Optional: len(dockerOptional)}
	for _, f := range dockerNecessary {
		if !set[f] {
			r.MissingNecessary = append(r.MissingNecessary, f)
		}
	}
	for _, f := range dockerOptional {
		if !set[f] {
			r.MissingOptional = append(r.MissingOptional, f)
		}
	}
	return r
}

// checkDockerConfig fails unless the config has every "Generally
// Necessary" flag and every optional flag is either set or named in
// dockerOmitted (and no omitted flag is set: the list must stay true).
func checkDockerConfig(config string) error {
	r := dockerCheckConfig(config)
	var problems []string
	if len(r.MissingNecessary) > 0 {
		problems = append(problems, fmt.Sprintf("Docker's check-config.sh: %d of %d \"Generally Necessary\" flags missing: %s",
			len(r.MissingNecessary), r.Necessary, strings.Join(r.MissingNecessary, " ")))
	}
	missing := map[string]bool{}
	var unexplained []string
	for _, f := range r.MissingOptional {
		missing[f] = true
		if dockerOmitted[f] == "" {
			unexplained = append(unexplained, f)
		}
	}
	if len(unexplained) > 0 {
		problems = append(problems, fmt.Sprintf("Docker's check-config.sh: optional flags neither set nor omitted with a reason (tools/assets/dockercheck.go, tools/kernel/POLICY.md): %s",
			strings.Join(unexplained, " ")))
	}
	var stale []string
	for f := range dockerOmitted {
		if !missing[f] {
			stale = append(stale, f)
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 {
		problems = append(problems, fmt.Sprintf("Docker's check-config.sh: flags listed as omitted are set: %s", strings.Join(stale, " ")))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}
