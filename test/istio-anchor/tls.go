package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// servingPair is what the server presents and what a client trusts.
type servingPair struct {
	cert  tls.Certificate
	caPEM []byte // nil when the pair was read from files (their CA is the caller's)
}

// loadOrGenerate reads tls.crt/tls.key from dir when both exist; otherwise
// it makes a self-signed CA and a serving certificate for sans, and, when
// dir is set, writes tls.crt, tls.key and ca.crt there.
func loadOrGenerate(dir string, sans []string) (*servingPair, error) {
	if dir != "" {
		crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		if fileExists(crt) && fileExists(key) {
			c, err := tls.LoadX509KeyPair(crt, key)
			if err != nil {
				return nil, err
			}
			p := &servingPair{cert: c}
			if ca, err := os.ReadFile(filepath.Join(dir, "ca.crt")); err == nil {
				p.caPEM = ca
			}
			return p, nil
		}
	}
	caPEM, certPEM, keyPEM, err := selfSigned(sans)
	if err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		for name, b := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM, "ca.crt": caPEM} {
			mode := os.FileMode(0o644)
			if name == "tls.key" {
				mode = 0o600
			}
			if err := os.WriteFile(filepath.Join(dir, name), b, mode); err != nil {
				return nil, err
			}
		}
	}
	return &servingPair{cert: c, caPEM: caPEM}, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// selfSigned makes an ECDSA P-256 CA (valid a week) and a serving
// certificate it signs for sans (IP addresses or DNS names).
func selfSigned(sans []string) (caPEM, certPEM, keyPEM []byte, err error) {
	now := time.Now().Add(-time.Minute)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "istio-anchor CA"},
		NotBefore:             now,
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "istiod.istio-system.svc"},
		NotBefore:    now,
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if s != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}
