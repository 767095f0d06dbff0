package certs

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIssueAndVerify(t *testing.T) {
	ca, err := NewCA("test-ca", time.Hour)
	require.NoError(t, err)
	pair, err := ca.IssueServing(ServiceHosts("injector", "mesh-system"), 30*time.Minute)
	require.NoError(t, err)

	cert, err := ParseCertificate(pair.CertPEM)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca.CertPEM))
	for _, host := range []string{"injector.mesh-system.svc", "127.0.0.1", "::1", "localhost"} {
		_, err := cert.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		assert.NoError(t, err, host)
	}
	_, err = cert.Verify(x509.VerifyOptions{DNSName: "evil.example.com", Roots: pool})
	assert.Error(t, err, "a name not in the certificate must not verify")

	_, err = tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	require.NoError(t, err, "certificate and key must form a pair")
}

func TestServingCertNeverOutlivesCA(t *testing.T) {
	ca, err := NewCA("short-ca", time.Hour)
	require.NoError(t, err)
	pair, err := ca.IssueServing([]string{"x"}, 24*time.Hour)
	require.NoError(t, err)
	assert.False(t, pair.NotAfter.After(ca.Cert.NotAfter))
}

func TestWriteDirAndLoadCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("ca", time.Hour)
	require.NoError(t, err)
	pair, err := ca.IssueServing([]string{"localhost"}, time.Hour)
	require.NoError(t, err)
	require.NoError(t, WriteDir(dir, pair, ca.CertPEM))
	for _, f := range []string{CertFile, KeyFile, CAFile} {
		_, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the key is private")
	entries, _ := os.ReadDir(dir)
	assert.Len(t, entries, 3, "no temporary files left behind")

	keyPEM, err := ca.KeyPEM()
	require.NoError(t, err)
	loaded, err := LoadCA(ca.CertPEM, keyPEM)
	require.NoError(t, err)
	assert.True(t, loaded.Cert.Equal(ca.Cert))
	_, err = LoadCA(pair.CertPEM, pair.KeyPEM)
	assert.ErrorContains(t, err, "not a CA")
	_, err = LoadCA([]byte("junk"), keyPEM)
	assert.ErrorContains(t, err, "no PEM")
}

func TestNeedsRenewal(t *testing.T) {
	ca, err := NewCA("ca", 90*time.Hour)
	require.NoError(t, err)
	nb := ca.Cert.NotBefore
	life := ca.Cert.NotAfter.Sub(nb)
	assert.False(t, NeedsRenewal(ca.Cert, nb.Add(life/2), 2.0/3))
	assert.True(t, NeedsRenewal(ca.Cert, nb.Add(life*3/4), 2.0/3))
}

func TestWriteDirAtomicSwapsThePair(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("ca", time.Hour)
	require.NoError(t, err)
	// A folder first written with WriteDir (plain files) is taken over.
	first, err := ca.IssueServing([]string{"localhost"}, time.Hour)
	require.NoError(t, err)
	require.NoError(t, WriteDir(dir, first, ca.CertPEM))
	for i := 0; i < 3; i++ {
		pair, err := ca.IssueServing([]string{"localhost"}, time.Hour)
		require.NoError(t, err)
		require.NoError(t, WriteDirAtomic(dir, pair, ca.CertPEM))
		certPEM, err := os.ReadFile(filepath.Join(dir, CertFile))
		require.NoError(t, err)
		keyPEM, err := os.ReadFile(filepath.Join(dir, KeyFile))
		require.NoError(t, err)
		assert.Equal(t, pair.CertPEM, certPEM)
		_, err = tls.X509KeyPair(certPEM, keyPEM)
		require.NoError(t, err)
		st, err := os.Stat(filepath.Join(dir, KeyFile))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the key is private")
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Len(t, names, 5, "..data, one generation folder and three links: %v", names)
	target, err := os.Readlink(filepath.Join(dir, CertFile))
	require.NoError(t, err)
	assert.Equal(t, filepath.Join("..data", CertFile), target)
}
