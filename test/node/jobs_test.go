package node

import (
	"context"
	"fmt"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/test/node/images"
	"github.com/sidecar-injector/injector/test/node/nodeharness"
	"github.com/sidecar-injector/injector/test/node/standin"
)

// TestJobs runs Jobs through kube-controller-manager's Job controller in a
// namespace labelled for injection, in native and in classic mode (where
// the container's command is wrapped in `mesh-init hook run`, which tells
// the proxy to quit so the pod can complete):
//   - a Job whose command succeeds completes, its call going through the
//     Envoy STAND-IN (classic: on the distroless image, the wrapper run
//     from the shared volume);
//   - restartPolicy Never, a command that always fails: the Job controller
//     creates backoffLimit+1 pods, each ends Failed with the command's exit
//     code (the proxy does not keep it running), and the Job fails with
//     BackoffLimitExceeded;
//   - restartPolicy OnFailure, a command that fails once: the kubelet
//     reruns it in the same pod, the proxy is still there for the second
//     run (classic: `hook run` does not quit the proxy after a failure
//     under OnFailure), and the Job completes.
func TestJobs(t *testing.T) {
	n := nodeharness.Shared(t)
	if !n.Controllers {
		t.Skip("kube-controller-manager is not built (bash test/tools/install.sh --only node): no Job controller")
	}
	injector(t, n)
	ctx := t.Context()
	const ns, peersNS = "jobs", "jobs-peers"
	if err := n.EnsureNamespace(ctx, peersNS, nil); err != nil {
		t.Fatal(err)
	}
	if err := n.EnsureNamespace(ctx, ns, map[string]string{nodeharness.InjectionLabel: "enabled"}); err != nil {
		t.Fatal(err)
	}
	peerPod := appPod(peersNS, "peer")
	peerPod.Spec.Containers[0].Image = images.DistrolessRef
	peer, _, err := n.RunPod(ctx, peerPod)
	if err != nil {
		t.Fatal(err)
	}
	peerAddr := hostPort(mustIP(t, peer, false), 8080)
	good := "http://" + peerAddr + "/whoami"
	refused := "http://" + hostPort(mustIP(t, peer, false), 9) + "/" // nothing listens: connection refused

	for _, mode := range []string{"native", "classic"} {
		native := mode == "native"
		ann := map[string]string{"sidecar-injector.io/native-sidecar": fmt.Sprint(native)}

		t.Run(mode+"/succeeds", func(t *testing.T) {
			t.Parallel()
			name := mode + "-ok"
			c := corev1.Container{Name: "app", Image: images.DistrolessRef, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"/usr/local/bin/testapp", "call", "--count=1", good}}
			job := newJob(ns, name, ann, corev1.RestartPolicyNever, 0, c)
			j := runJob(t, n, job, func(j *batchv1.Job) bool { return j.Status.Succeeded == 1 })
			pods := jobPods(t, n, j)
			if len(pods) != 1 {
				t.Fatalf("%d pods, want 1", len(pods))
			}
			p := pods[0]
			checkJobInjection(t, p, native)
			lines := proxyLogOf(t, n, p)
			if connections(lines)["outbound "+peerAddr] != 1 {
				t.Errorf("the Job's call did not go through the Envoy STAND-IN: %v", connections(lines))
			}
			if !native {
				if _, ok := proxyLine(lines, "exiting after /quitquitquit"); !ok {
					t.Errorf("the classic proxy was not told to quit by `hook run`: %+v", lines)
				}
			}
			t.Logf("%s: the Job completed (pod %s %s), its call went through the Envoy STAND-IN", mode, p.Name, p.Status.Phase)
		})

		t.Run(mode+"/never-fails-backofflimit", func(t *testing.T) {
			t.Parallel()
			name := mode + "-fails"
			c := corev1.Container{Name: "app", Image: images.DistrolessRef, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"/usr/local/bin/testapp", "call", "--count=1", refused}}
			const backoffLimit = 1
			job := newJob(ns, name, ann, corev1.RestartPolicyNever, backoffLimit, c)
			j := runJob(t, n, job, func(j *batchv1.Job) bool { return jobCondition(j, batchv1.JobFailed) != nil })
			if cond := jobCondition(j, batchv1.JobFailed); cond.Reason != "BackoffLimitExceeded" {
				t.Errorf("the Job failed with %s: %s, want BackoffLimitExceeded", cond.Reason, cond.Message)
			}
			pods := jobPods(t, n, j)
			if len(pods) != backoffLimit+1 || j.Status.Failed != backoffLimit+1 {
				t.Errorf("%d pods, %d failed; want backoffLimit+1 = %d", len(pods), j.Status.Failed, backoffLimit+1)
			}
			for _, p := range pods {
				checkJobInjection(t, p, native)
				if p.Status.Phase != corev1.PodFailed {
					t.Errorf("pod %s is %s, want Failed (the proxy must not keep it running)", p.Name, p.Status.Phase)
				}
				if st := status(&p, "app"); st == nil || st.State.Terminated == nil || st.State.Terminated.ExitCode != 1 {
					t.Errorf("pod %s: app %+v, want exit 1 (the command's own)", p.Name, st)
				}
			}
			t.Logf("%s, restartPolicy Never, backoffLimit %d: %d pods failed, Job %s", mode, backoffLimit, len(pods), jobCondition(j, batchv1.JobFailed).Reason)
		})

		t.Run(mode+"/onfailure-retries-in-place", func(t *testing.T) {
			t.Parallel()
			name := mode + "-retry"
			// Fails the first time, then calls the peer: the marker file
			// lives in an emptyDir, which survives the container's
			// restart. The app image has a shell.
			script := "if [ -e /data/tried ]; then exec /usr/local/bin/testapp call --count=1 " + good + "; fi; : > /data/tried; exit 3"
			c := corev1.Container{Name: "app", Image: images.AppRef, ImagePullPolicy: corev1.PullIfNotPresent,
				Command:      []string{"/bin/sh", "-c", script},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}
			job := newJob(ns, name, ann, corev1.RestartPolicyOnFailure, 2, c)
			job.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			j := runJob(t, n, job, func(j *batchv1.Job) bool { return j.Status.Succeeded == 1 })
			pods := jobPods(t, n, j)
			if len(pods) != 1 {
				t.Fatalf("%d pods, want 1 (OnFailure retries in the same pod)", len(pods))
			}
			p := pods[0]
			checkJobInjection(t, p, native)
			st := status(&p, "app")
			if st == nil || st.RestartCount != 1 || st.LastTerminationState.Terminated == nil || st.LastTerminationState.Terminated.ExitCode != 3 {
				t.Errorf("app status %+v, want one restart after exit 3", st)
			}
			lines := proxyLogOf(t, n, p)
			if connections(lines)["outbound "+peerAddr] != 1 {
				t.Errorf("the second run's call did not go through the Envoy STAND-IN: %v", connections(lines))
			}
			t.Logf("%s, restartPolicy OnFailure: the command failed once (exit 3), the kubelet reran it in pod %s with the proxy still up, the Job completed", mode, p.Name)
		})
	}
}

func newJob(ns, name string, ann map[string]string, restart corev1.RestartPolicy, backoffLimit int32, c corev1.Container) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr(backoffLimit),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: ann},
				Spec: corev1.PodSpec{
					RestartPolicy:                 restart,
					TerminationGracePeriodSeconds: ptr(int64(5)),
					Containers:                    []corev1.Container{c},
				},
			},
		},
	}
}

func jobCondition(j *batchv1.Job, typ batchv1.JobConditionType) *batchv1.JobCondition {
	for i, c := range j.Status.Conditions {
		if c.Type == typ && c.Status == corev1.ConditionTrue {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

// runJob creates a Job and waits until done says so; a Job that ends the
// other way ends the wait at once.
func runJob(t *testing.T, n *nodeharness.Node, job *batchv1.Job, done func(*batchv1.Job) bool) *batchv1.Job {
	t.Helper()
	ctx := t.Context()
	if _, err := n.Clientset.BatchV1().Jobs(job.Namespace).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got *batchv1.Job
	err := nodeharness.Poll(ctx, "Job "+job.Namespace+"/"+job.Name+" to end as expected", func(ctx context.Context) (bool, string, error) {
		j, err := n.Clientset.BatchV1().Jobs(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		got = j
		if done(j) {
			return true, "", nil
		}
		for _, typ := range []batchv1.JobConditionType{batchv1.JobComplete, batchv1.JobFailed} {
			if c := jobCondition(j, typ); c != nil {
				return false, "", fmt.Errorf("the Job ended %s (%s: %s)\n%s", typ, c.Reason, c.Message, jobDiag(n, j))
			}
		}
		return false, fmt.Sprintf("status %+v", j.Status), nil
	}, func() string { return jobDiag(n, job) })
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func jobPods(t *testing.T, n *nodeharness.Node, j *batchv1.Job) []corev1.Pod {
	t.Helper()
	pods, err := n.Clientset.CoreV1().Pods(j.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + j.Name})
	if err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

func jobDiag(n *nodeharness.Node, j *batchv1.Job) string {
	pods, err := n.Clientset.CoreV1().Pods(j.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + j.Name})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		b.WriteString(n.DiagnosePod(p.Namespace, p.Name))
	}
	return b.String()
}

// checkJobInjection: the Job's pod was injected in the mode asked for;
// in classic mode the app's command is wrapped in `mesh-init hook run`.
func checkJobInjection(t *testing.T, p corev1.Pod, native bool) {
	t.Helper()
	if _, ok := p.Annotations[nodeharness.StatusAnnotation]; !ok {
		t.Fatalf("pod %s was not injected", p.Name)
	}
	app := container(&p, "app")
	if native {
		if c := container(&p, "mesh-proxy"); c == nil || c.RestartPolicy == nil {
			t.Errorf("pod %s: the proxy is not a native sidecar", p.Name)
		}
		return
	}
	if len(app.Command) < 3 || app.Command[0] != "/var/run/mesh/mesh-init" || app.Command[2] != "run" {
		t.Errorf("pod %s: the app's command %q is not wrapped in `mesh-init hook run`", p.Name, app.Command)
	}
}

// proxyLogOf reads the Envoy STAND-IN's log of an ended pod.
func proxyLogOf(t *testing.T, n *nodeharness.Node, p corev1.Pod) []standin.LogLine {
	t.Helper()
	lines, err := n.ProxyLog(t.Context(), p.Namespace, p.Name)
	if err != nil {
		t.Fatal(err)
	}
	return lines
}
