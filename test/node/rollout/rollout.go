package rollout

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Scenario is one measured rollout: a Deployment (and optionally its
// Service) is created, the client calls it through the Discovery, the
// Deployment's pods are replaced by a rollout (kube-controller-manager's
// Deployment controller does it, one by one with maxSurge 1 and
// maxUnavailable 0), and the client goes on until the old pods are gone
// and Settle has passed.
type Scenario struct {
	Name       string
	Deployment *appsv1.Deployment
	// Service, when set, is created before the Deployment (its
	// EndpointSlices are what an EndpointSlices discovery reads).
	Service   *corev1.Service
	Discovery Discovery
	// Interval and Timeout of the client's requests; Path requested.
	Interval, Timeout time.Duration
	Path              string
	// Settle is how long the client runs before the rollout starts and
	// after it has ended.
	Settle time.Duration
	// Logf receives progress lines (nil: none).
	Logf func(format string, args ...any)
}

// Report is what a scenario measured.
type Report struct {
	Name      string
	Discovery string
	Replicas  int32
	// Sent and Failed count every request from the moment the client's
	// view first held every instance to the client's end (before, during
	// and after the rollout). Requests before that moment (a consumer that
	// has not yet seen instances that register after they are Ready) are
	// not the rollout's; Warmup counts them, and WarmupFailed those of them
	// that failed.
	Sent, Failed         int
	Warmup, WarmupFailed int
	// Window is the time from the first failed request to the last (0
	// when none failed); First is when the first failed, after the
	// rollout began.
	Window, First time.Duration
	// Errors counts the failed requests by cause.
	Errors map[string]int
	// Rollout is the time from the rollout's start until the last old
	// pod was gone; Gone is when each old pod was gone, after the start.
	Rollout time.Duration
	Gone    []time.Duration
	// OldPods are the names of the pods the rollout replaced (whose
	// preStop hooks ran in it; the new ones are deleted afterwards with a
	// one-second grace period, which cuts their hooks short).
	OldPods []string
	// Requests are all of them, for whoever wants more detail.
	Requests []Request `json:"-"`
}

// Run runs a scenario; ctx bounds every wait. The Deployment and Service
// are deleted afterwards (pods with no grace period) and awaited.
func Run(ctx context.Context, cs kubernetes.Interface, sc Scenario) (rep *Report, err error) {
	logf := sc.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	dep := sc.Deployment
	ns := dep.Namespace
	replicas := int32(1)
	if dep.Spec.Replicas != nil {
		replicas = *dep.Spec.Replicas
	}
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := cleanup(context.WithoutCancel(ctx), cs, sc, sel); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if sc.Service != nil {
		if _, err := cs.CoreV1().Services(ns).Create(ctx, sc.Service, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("creating Service %s/%s: %w", ns, sc.Service.Name, err)
		}
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating Deployment %s/%s: %w", ns, dep.Name, err)
	}
	if err := poll(ctx, "Deployment "+ns+"/"+dep.Name+" to be available", func() (bool, string) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, dep.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return d.Status.ObservedGeneration >= d.Generation && d.Status.ReadyReplicas == replicas && d.Status.UpdatedReplicas == replicas,
			fmt.Sprintf("%+v", d.Status)
	}, func() string { return podsSummary(ctx, cs, ns, sel) }); err != nil {
		return nil, err
	}

	c := &Client{Discovery: sc.Discovery, Interval: sc.Interval, Timeout: sc.Timeout, Path: sc.Path}
	rec := c.Start(ctx)
	stopped := false
	defer func() {
		if !stopped {
			_, _ = rec.Stop()
		}
	}()
	// The consumer must know every instance before the rollout starts;
	// the measurement starts when it first does.
	var from time.Time
	if err := poll(ctx, "the client's view ("+sc.Discovery.Name()+") to hold all "+fmt.Sprint(replicas)+" instances", func() (bool, string) {
		v := rec.Views()
		if len(v) == 0 {
			return false, "no view yet"
		}
		last := v[len(v)-1]
		if len(last.Addrs) != int(replicas) {
			return false, fmt.Sprint(last.Addrs)
		}
		from = last.At
		return true, ""
	}, func() string { return podsSummary(ctx, cs, ns, sel) }); err != nil {
		return nil, err
	}
	sleep(ctx, sc.Settle)

	old, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	oldUIDs := map[types.UID]string{}
	for _, p := range old.Items {
		oldUIDs[p.UID] = p.Name
	}
	start := time.Now()
	logf("%s: rollout of %s/%s (%d replicas) starts", sc.Name, ns, dep.Name, replicas)
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, start.Format(time.RFC3339Nano))
	if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, dep.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return nil, fmt.Errorf("starting the rollout (kubectl rollout restart's patch): %w", err)
	}
	gone := map[types.UID]time.Duration{}
	if err := poll(ctx, "the rollout of "+ns+"/"+dep.Name+" to replace every pod", func() (bool, string) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return false, err.Error()
		}
		present := map[types.UID]bool{}
		ready := 0
		for _, p := range pods.Items {
			present[p.UID] = true
			if _, isOld := oldUIDs[p.UID]; !isOld && p.DeletionTimestamp == nil && podReady(&p) {
				ready++
			}
		}
		for uid := range oldUIDs {
			if _, seen := gone[uid]; !seen && !present[uid] {
				gone[uid] = time.Since(start)
			}
		}
		return len(gone) == len(oldUIDs) && ready == int(replicas),
			fmt.Sprintf("%d of %d old pods gone, %d new pods ready", len(gone), len(oldUIDs), ready)
	}, func() string { return podsSummary(ctx, cs, ns, sel) }); err != nil {
		return nil, err
	}
	took := time.Since(start)
	logf("%s: rollout done in %s", sc.Name, took.Round(time.Millisecond))
	sleep(ctx, sc.Settle)
	reqs, derr := rec.Stop()
	stopped = true
	if derr != nil {
		return nil, fmt.Errorf("the client's discovery failed: %w", derr)
	}
	rep = summarize(sc, replicas, from, start, took, reqs)
	for _, d := range gone {
		rep.Gone = append(rep.Gone, d)
	}
	for _, name := range oldUIDs {
		rep.OldPods = append(rep.OldPods, name)
	}
	sort.Strings(rep.OldPods)
	sort.Slice(rep.Gone, func(i, j int) bool { return rep.Gone[i] < rep.Gone[j] })
	return rep, nil
}

// summarize counts the requests sent from `from` on (see Report.Sent).
func summarize(sc Scenario, replicas int32, from, start time.Time, took time.Duration, reqs []Request) *Report {
	rep := &Report{Name: sc.Name, Discovery: sc.Discovery.Name(), Replicas: replicas, Rollout: took, Errors: map[string]int{}, Requests: reqs}
	var first, last time.Time
	for _, r := range reqs {
		if r.At.Before(from) {
			rep.Warmup++
			if r.Err != "" {
				rep.WarmupFailed++
			}
			continue
		}
		rep.Sent++
		if r.Err == "" {
			continue
		}
		rep.Failed++
		rep.Errors[r.Err]++
		if first.IsZero() {
			first = r.At
		}
		last = r.At
	}
	if !first.IsZero() {
		rep.Window = last.Sub(first)
		rep.First = first.Sub(start)
	}
	return rep
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// cleanup deletes the Deployment, its pods (a one-second grace period:
// the measurement is over, but the kubelet still confirms each pod's end,
// so its sandbox is torn down before the pod leaves the API) and the
// Service, and waits until the pods are gone.
func cleanup(ctx context.Context, cs kubernetes.Interface, sc Scenario, sel labels.Selector) error {
	ns := sc.Deployment.Namespace
	bg := metav1.DeletePropagationBackground
	if err := cs.AppsV1().Deployments(ns).Delete(ctx, sc.Deployment.Name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if sc.Service != nil {
		if err := cs.CoreV1().Services(ns).Delete(ctx, sc.Service.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	one := int64(1)
	return poll(ctx, "the pods of "+ns+"/"+sc.Deployment.Name+" to be gone", func() (bool, string) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return false, err.Error()
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				_ = cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &one})
			}
		}
		return len(pods.Items) == 0, fmt.Sprintf("%d pods left", len(pods.Items))
	}, nil)
}

// poll checks cond every 100ms until it holds or ctx ends; the error says
// what was awaited, cond's last word and what diag adds.
func poll(ctx context.Context, what string, cond func() (bool, string), diag func() string) error {
	start := time.Now()
	var last string
	for {
		ok, detail := cond()
		if ok {
			return nil
		}
		last = detail
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("timed out after %s waiting for %s; last seen: %s", time.Since(start).Round(time.Millisecond), what, last)
			if diag != nil {
				msg += "\n" + diag()
			}
			return fmt.Errorf("%s", msg)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func podsSummary(ctx context.Context, cs kubernetes.Interface, ns string, sel labels.Selector) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s: phase %s ready %t deleting %t", p.Name, p.Status.Phase, podReady(&p), p.DeletionTimestamp != nil)
		for _, st := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			fmt.Fprintf(&b, "; %s ready=%t restarts=%d", st.Name, st.Ready, st.RestartCount)
			if w := st.State.Waiting; w != nil {
				fmt.Fprintf(&b, " waiting %s %s", w.Reason, w.Message)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Table renders reports as a Markdown table.
func Table(reps []*Report) string {
	var b strings.Builder
	b.WriteString("| scenario | replicas | sent | failed | failure window | first failure after the start | errors | rollout (old pods gone) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---|---:|\n")
	for _, r := range reps {
		var errs []string
		for k, v := range r.Errors {
			errs = append(errs, fmt.Sprintf("%s ×%d", k, v))
		}
		sort.Strings(errs)
		first := "—"
		if r.Failed > 0 {
			first = r.First.Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %s | %s | %s |\n", r.Name, r.Replicas, r.Sent, r.Failed,
			r.Window.Round(10*time.Millisecond), first, strings.Join(errs, ", "), r.Rollout.Round(100*time.Millisecond))
	}
	return b.String()
}

// Addrs formats a view.
func Addrs(v []netip.AddrPort) string {
	s := make([]string, len(v))
	for i, a := range v {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}
