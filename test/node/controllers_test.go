package node

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/test/node/images"
	"github.com/sidecar-injector/injector/test/node/nodeharness"
)

// TestControllersRunDeploymentsAndJobs: with kube-controller-manager and
// kube-scheduler on the node, a Deployment's pod is created by its
// ReplicaSet, scheduled and becomes Ready, and a Job's pod runs to
// completion, as in a cluster (no nodeName, no hand-made pods).
func TestControllersRunDeploymentsAndJobs(t *testing.T) {
	n := nodeharness.Shared(t)
	if !n.Controllers {
		t.Skip("kube-controller-manager and kube-scheduler are not built (bash test/tools/install.sh --only node); the harness binds pods itself")
	}
	ctx := t.Context()
	const ns = "controllers"
	if err := n.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	tmpl := appPod(ns, "")
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: tmpl.Spec},
		},
	}
	if _, err := n.Clientset.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "once", Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr(int32(0)),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "call", Image: images.DistrolessRef, ImagePullPolicy: corev1.PullIfNotPresent,
					// `call` with no URL does nothing and exits 0.
					Args: []string{"call", "--count=1"}}},
			}},
		},
	}
	if _, err := n.Clientset.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := nodeharness.Poll(ctx, "Deployment web to have 1 ready replica", func(ctx context.Context) (bool, string, error) {
		d, err := n.Clientset.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		return d.Status.ReadyReplicas == 1, fmt.Sprintf("status %+v", d.Status), nil
	}, func() string { return podsDiag(n, ns) })
	if err != nil {
		t.Fatal(err)
	}
	err = nodeharness.Poll(ctx, "Job once to succeed", func(ctx context.Context) (bool, string, error) {
		j, err := n.Clientset.BatchV1().Jobs(ns).Get(ctx, "once", metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		if j.Status.Failed > 0 {
			return false, "", fmt.Errorf("the Job failed: %+v\n%s", j.Status, podsDiag(n, ns))
		}
		return j.Status.Succeeded == 1, fmt.Sprintf("status %+v", j.Status), nil
	}, func() string { return podsDiag(n, ns) })
	if err != nil {
		t.Fatal(err)
	}
}

func podsDiag(n *nodeharness.Node, ns string) string {
	pods, err := n.Clientset.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	out := ""
	for _, p := range pods.Items {
		out += n.DiagnosePod(ns, p.Name)
	}
	return out
}
