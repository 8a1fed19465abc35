package main

import (
	"fmt"
	"sort"
	"strings"
)

// Docker's kernel checklist, as data: the flags of contrib/check-config.sh
// from Docker 20.10.24, the version Debian 12 ships in its docker.io
// package (20.10.24+dfsg1-1+deb12u1, /usr/share/docker.io/contrib/
// check-config.sh). The script's kernel-version conditions are evaluated
// for Linux 6.12: DEVPTS_MULTIPLE_INSTANCES (before 4.8), NF_NAT_IPV4
// (up to 5.1), NF_NAT_NEEDED (up to 5.2), MEMCG_KMEM (up to 4.5),
// RESOURCE_COUNTERS (up to 3.18), IOSCHED_CFQ and CFQ_GROUP_IOSCHED (before
// 5.0) and INET_XFRM_MODE_TRANSPORT (up to 5.3) do not apply. Its runtime
// checks (cgroup mounts, AppArmor tools, /dev/zfs, the keys limit) are not
// about the kernel configuration and are left out.
var (
	// dockerNecessary is the script's "Generally Necessary" list.
	dockerNecessary = []string{
		"NAMESPACES", "NET_NS", "PID_NS", "IPC_NS", "UTS_NS",
		"CGROUPS", "CGROUP_CPUACCT", "CGROUP_DEVICE", "CGROUP_FREEZER", "CGROUP_SCHED", "CPUSETS", "MEMCG",
		"KEYS",
		"VETH", "BRIDGE", "BRIDGE_NETFILTER",
		"IP_NF_FILTER", "IP_NF_TARGET_MASQUERADE",
		"NETFILTER_XT_MATCH_ADDRTYPE", "NETFILTER_XT_MATCH_CONNTRACK", "NETFILTER_XT_MATCH_IPVS",
		"NETFILTER_XT_MARK",
		"IP_NF_NAT", "NF_NAT",
		"POSIX_MQUEUE",
	}
	// dockerOptional is the script's "Optional Features" list, storage
	// and network drivers included.
	dockerOptional = []string{
		"USER_NS", "SECCOMP", "CGROUP_PIDS", "MEMCG_SWAP",
		"BLK_CGROUP", "BLK_DEV_THROTTLING", "CGROUP_PERF", "CGROUP_HUGETLB",
		"NET_CLS_CGROUP", "CGROUP_NET_PRIO",
		"CFS_BANDWIDTH", "FAIR_GROUP_SCHED", "RT_GROUP_SCHED",
		"IP_NF_TARGET_REDIRECT", "IP_VS", "IP_VS_NFCT", "IP_VS_PROTO_TCP", "IP_VS_PROTO_UDP", "IP_VS_RR",
		"EXT3_FS", "EXT3_FS_XATTR", "EXT3_FS_POSIX_ACL", "EXT3_FS_SECURITY",
		"EXT4_FS", "EXT4_FS_POSIX_ACL", "EXT4_FS_SECURITY",
		"VXLAN", "BRIDGE_VLAN_FILTERING",
		"CRYPTO", "CRYPTO_AEAD", "CRYPTO_GCM", "CRYPTO_SEQIV", "CRYPTO_GHASH",
		"XFRM", "XFRM_USER", "XFRM_ALGO", "INET_ESP",
		"IPVLAN", "MACVLAN", "DUMMY",
		"NF_NAT_FTP", "NF_CONNTRACK_FTP", "NF_NAT_TFTP", "NF_CONNTRACK_TFTP",
		"AUFS_FS", "BTRFS_FS", "BTRFS_FS_POSIX_ACL", "BLK_DEV_DM", "DM_THIN_PROVISIONING", "OVERLAY_FS",
	}
	// dockerOmitted names each optional flag the kernels leave out, and
	// why (tools/kernel/POLICY.md says the same).
	dockerOmitted = map[string]string{
		"MEMCG_SWAP":           "gone since Linux 6.1 (swap accounting is part of MEMCG), and the guests have no swap",
		"CGROUP_PERF":          "no perf profiling inside the guests",
		"NET_CLS_CGROUP":       "cgroup v1 network classifier; cgroup v2 attaches BPF programs",
		"CGROUP_NET_PRIO":      "cgroup v1 network priority; cgroup v2 attaches BPF programs",
		"RT_GROUP_SCHED":       "with it cgroup v2's cpu controller cannot be enabled while a real-time task runs",
		"EXT3_FS":              "ext3 volumes mount with the ext4 driver (-t ext4)",
		"EXT3_FS_XATTR":        "no such option in Linux 6.12; ext3 is ext4's job",
		"EXT3_FS_POSIX_ACL":    "ext3 volumes mount with the ext4 driver, which has ACLs",
		"EXT3_FS_SECURITY":     "ext3 volumes mount with the ext4 driver, which has security xattrs",
		"CRYPTO_AEAD":          "Docker Swarm's encrypted overlay (IPsec) only; WireGuard covers VPNs",
		"CRYPTO_GCM":           "Docker Swarm's encrypted overlay (IPsec) only",
		"CRYPTO_SEQIV":         "Docker Swarm's encrypted overlay (IPsec) only",
		"CRYPTO_GHASH":         "Docker Swarm's encrypted overlay (IPsec) only",
		"XFRM":                 "Docker Swarm's encrypted overlay (IPsec) only",
		"XFRM_USER":            "Docker Swarm's encrypted overlay (IPsec) only",
		"XFRM_ALGO":            "Docker Swarm's encrypted overlay (IPsec) only",
		"INET_ESP":             "Docker Swarm's encrypted overlay (IPsec) only",
		"AUFS_FS":              "not in mainline Linux; overlay2 is Docker's driver",
		"BTRFS_FS":             "storage driver other than overlay2; overlayfs is built in",
		"BTRFS_FS_POSIX_ACL":   "storage driver other than overlay2; overlayfs is built in",
		"BLK_DEV_DM":           "devicemapper storage driver, removed from Docker 25",
		"DM_THIN_PROVISIONING": "devicemapper storage driver, removed from Docker 25",
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
