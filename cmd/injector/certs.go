package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sidecar-injector/injector/certs"
)

func certsMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("certs", stderr)
	dir := fs.String("dir", "", "directory to write tls.crt, tls.key and ca.crt into (required)")
	service := fs.String("service", "sidecar-injector", "the webhook's Service name")
	namespace := fs.String("namespace", "mesh-system", "the webhook's namespace")
	extra := fs.String("hosts", "", "extra comma-separated DNS names or IPs")
	validity := fs.Duration("validity", 365*24*time.Hour, "certificate lifetime")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "injector certs: --dir is required")
		return 2
	}
	ca, err := certs.NewCA("sidecar-injector-ca", *validity)
	if err != nil {
		fmt.Fprintln(stderr, "injector certs:", err)
		return 1
	}
	hosts := certs.ServiceHosts(*service, *namespace)
	for _, h := range strings.Split(*extra, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	pair, err := ca.IssueServing(hosts, *validity)
	if err != nil {
		fmt.Fprintln(stderr, "injector certs:", err)
		return 1
	}
	if err := certs.WriteDir(*dir, pair, ca.CertPEM); err != nil {
		fmt.Fprintln(stderr, "injector certs:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s/{tls.crt,tls.key,ca.crt} for %s, valid until %s\n", *dir, strings.Join(hosts, ", "), pair.NotAfter.Format(time.RFC3339))
	return 0
}
