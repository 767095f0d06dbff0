// Package certs is the injector's TLS material: a self-signed CA and a
// serving certificate for the webhook's Service, written as
// tls.crt/tls.key/ca.crt (dev, tests, `injector certs`); the self-managed
// mode (SelfManaged: a CA and certificate in a Secret shared by the
// replicas, renewed and rotated, with the webhook configuration's caBundle
// kept in sync); and the cert-manager mode's readiness check on the serving
// Certificate, with cert-manager's API types. Rotation only needs new files
// in the directory: the server's certificate watcher picks them up.
//
// It stands alone: it imports no other package of this module.
package certs
