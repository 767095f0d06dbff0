// Package netns proves mesh-init's capture rules with real connections:
// each test builds a pod and a peer network namespace joined by a veth pair
// with IPv4 and IPv6 addresses, runs the real mesh-init binary inside the
// pod namespace with the real iptables/ip6tables (nft and legacy), and
// checks where real TCP connections end up. It needs root and the iptables
// and iproute2 packages; see docs/capture.md.
package netns
