package certs

import (
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func TestCertificateReady(t *testing.T) {
	cert := func(conds ...cmapi.CertificateCondition) *cmapi.Certificate {
		return &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: "mesh-system", Name: "injector-serving"},
			Status: cmapi.CertificateStatus{Conditions: conds}}
	}
	assert.NoError(t, CertificateReady(cert(cmapi.CertificateCondition{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue})))

	err := CertificateReady(cert(
		cmapi.CertificateCondition{Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionTrue},
		cmapi.CertificateCondition{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionFalse,
			Reason: "DoesNotExist", Message: "Issuing certificate as Secret does not exist"}))
	require.Error(t, err)
	assert.Equal(t, "Certificate mesh-system/injector-serving is not Ready (DoesNotExist): Issuing certificate as Secret does not exist", err.Error())

	assert.ErrorContains(t, CertificateReady(cert()), "has no Ready condition yet")

	expired := cert(cmapi.CertificateCondition{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue})
	expired.Status.NotAfter = &metav1.Time{Time: time.Now().Add(-time.Minute)}
	assert.ErrorContains(t, CertificateReady(expired), "expired")
}

func TestCertificateChecker(t *testing.T) {
	s, err := CertManagerScheme()
	require.NoError(t, err)
	notReady := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: "mesh-system", Name: "injector-serving"},
		Status: cmapi.CertificateStatus{Conditions: []cmapi.CertificateCondition{{
			Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionFalse, Reason: "Pending", Message: "issuer not ready"}}}}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(notReady).Build()

	missing := &CertificateChecker{Client: c, Namespace: "mesh-system", Name: "other"}
	assert.ErrorContains(t, missing.Check(), "does not exist")

	chk := &CertificateChecker{Client: c, Namespace: "mesh-system", Name: "injector-serving", CacheFor: time.Nanosecond}
	assert.ErrorContains(t, chk.Check(), "(Pending): issuer not ready")

	notReady.Status.Conditions[0].Status = cmmeta.ConditionTrue
	require.NoError(t, c.Update(t.Context(), notReady))
	// Past CacheFor, so the next Check asks again. A lower bound only: a
	// busy machine sleeps longer, which changes nothing.
	time.Sleep(time.Millisecond)
	assert.NoError(t, chk.Check())
}
