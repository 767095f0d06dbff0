// Command demo is `make run-node`: the demo pods of `make run`
// (test/demo/pods) actually running on a real node. It brings the node
// tier's node up (test/node/nodeharness: kubelet, containerd, runc, CNI,
// kube-apiserver, etcd, kube-controller-manager, kube-scheduler), installs
// the injector with the chart's webhook configuration, creates the demo
// pods through the API server with their images replaced by the node
// tier's test app (there is no registry here; the Envoy STAND-IN runs as
// the proxy), waits until the kubelet has started each one, prints what
// runs, and tears everything down (or, with -keep, waits for Ctrl-C).
//
// As root, after `bash test/tools/install.sh` (docs/node.md):
//
//	make run-node
//	go run ./test/node/demo -keep   # leave it up; prints a kubeconfig
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/intstr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/injector/test/e2e/harness"
	"github.com/sidecar-injector/injector/test/node/images"
	"github.com/sidecar-injector/injector/test/node/nodeharness"
)

func main() {
	keep := flag.Bool("keep", false, "keep the node running after printing, until Ctrl-C")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard()) // envtest's own logging is not for this output
	if err := run(os.Stdout, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "run-node:", err)
		os.Exit(1)
	}
}

func run(out io.Writer, keep bool) (err error) {
	if missing := nodeharness.Missing(); len(missing) > 0 {
		return fmt.Errorf("the node cannot run here: missing %s (%s)", strings.Join(missing, ", "), nodeharness.InstallHint)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintln(out, "Starting a node: kubelet "+harness.KubeVersion+", containerd, runc and CNI from Debian, kube-apiserver, etcd, kube-controller-manager, kube-scheduler (no Docker, no cluster)...")
	n, err := nodeharness.Start(ctx, nodeharness.Options{Controllers: true, Logf: func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, f+"\n", a...)
	}})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(out, "\nTearing the node down...")
		left, serr := n.StopAndCheck()
		if serr != nil {
			err = errors.Join(err, serr)
		}
		if len(left) > 0 {
			err = errors.Join(err, fmt.Errorf("the node left this behind:\n  %s", strings.Join(left, "\n  ")))
		} else if serr == nil {
			fmt.Fprintln(out, "Done: the host is as it was (links, rules, mounts, sysctls, cgroups, processes checked).")
		}
	}()
	fmt.Fprintf(out, "Node up in %s. Installing the injector with the chart's webhook configuration...\n", n.BringUp.Round(time.Second))
	if _, err := n.StartInjector(ctx, nodeharness.InjectorOptions{}); err != nil {
		return err
	}
	if err := n.EnsureNamespace(ctx, "shop", map[string]string{nodeharness.InjectionLabel: "enabled"}); err != nil {
		return err
	}
	if err := n.EnsureNamespace(ctx, "legacy", nil); err != nil {
		return err
	}
	pods, err := demoPods()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Creating the %d demo pods of `make run` (test/demo/pods), images replaced by the test app; the proxy is the Envoy STAND-IN:\n\n", len(pods))
	var refused []string
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tNAMESPACE\tINJECTED\tPHASE\tREADY\tCONTAINERS (as the kubelet reports them)")
	for _, f := range pods {
		created, err := n.CreatePod(ctx, f.pod)
		if err != nil {
			var se apierrors.APIStatus
			if errors.As(err, &se) {
				fmt.Fprintf(tw, "%s\t%s\trefused\t-\t-\t(below)\n", f.pod.GenerateName+f.pod.Name, f.pod.Namespace)
				refused = append(refused, fmt.Sprintf("%s/%s (%s): %s", f.pod.Namespace, f.pod.GenerateName+f.pod.Name, f.file, se.Status().Message))
				continue
			}
			return err
		}
		done := nodeharness.Ready
		if created.Spec.RestartPolicy == corev1.RestartPolicyNever {
			done = func(p *corev1.Pod) (bool, error) {
				if p.Status.Phase == corev1.PodFailed {
					return false, fmt.Errorf("the pod failed")
				}
				return p.Status.Phase == corev1.PodSucceeded, nil
			}
		}
		p, err := n.WaitPod(ctx, created.Namespace, created.Name, "to run", done)
		if err != nil {
			return err
		}
		_, injected := p.Annotations[nodeharness.StatusAnnotation]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Namespace, yesNo(injected, mode(p)), p.Status.Phase, readyOf(p), containersOf(p))
	}
	tw.Flush()
	for _, r := range refused {
		fmt.Fprintf(out, "\nrefused by the API server: %s\n", r)
	}
	if keep {
		fmt.Fprintf(out, "\nThe node stays up until Ctrl-C. Try:\n  export KUBECONFIG=%s\n  kubectl get pods -A -o wide\n  kubectl -n shop logs <pod> -c mesh-proxy\n", n.CP.Kubeconfig)
		<-ctx.Done()
	}
	return nil
}

type demoPod struct {
	file string
	pod  *corev1.Pod
}

// demoPods reads `make run`'s pods and points them at the node's test app:
// the same names, namespaces, labels and annotations (so the same
// injection decisions), with images that exist on the node.
func demoPods() ([]demoPod, error) {
	files, err := filepath.Glob(filepath.Join(harness.RepoRoot(), "test", "demo", "pods", "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no demo pods in test/demo/pods: %v", err)
	}
	sort.Strings(files)
	var out []demoPod
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		p := &corev1.Pod{}
		if err := yaml.UnmarshalStrict(b, p); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		grace := int64(5)
		p.Spec.TerminationGracePeriodSeconds = &grace
		for i := range p.Spec.Containers {
			c := &p.Spec.Containers[i]
			c.Image, c.ImagePullPolicy = images.AppRef, corev1.PullIfNotPresent
			ports := []string{}
			for _, cp := range c.Ports {
				ports = append(ports, fmt.Sprint(cp.ContainerPort))
			}
			if len(ports) == 0 {
				ports = []string{"8080"}
			}
			if len(c.Command) > 0 {
				// A run-to-completion command: the test app's client,
				// which does nothing without URLs and exits 0.
				c.Command, c.Args = []string{"/usr/local/bin/testapp", "call", "--count=1"}, nil
			} else {
				c.Args = []string{"serve", "--listen=" + strings.Join(ports, ",")}
			}
			if rp := c.ReadinessProbe; rp != nil && rp.HTTPGet != nil {
				rp.HTTPGet.Path, rp.PeriodSeconds = "/whoami", 1
				if rp.HTTPGet.Port.Type == intstr.String && len(c.Ports) == 0 {
					rp.HTTPGet.Port = intstr.FromInt32(8080)
				}
			}
			c.Env = append(c.Env, corev1.EnvVar{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
				FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}})
		}
		out = append(out, demoPod{filepath.Base(f), p})
	}
	return out, nil
}

func mode(p *corev1.Pod) string {
	for _, c := range p.Spec.InitContainers {
		if c.Name == "mesh-proxy" {
			return "native sidecar"
		}
	}
	return "classic sidecar"
}

func yesNo(b bool, how string) string {
	if b {
		return "yes, " + how
	}
	return "no"
}

func readyOf(p *corev1.Pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return string(c.Status)
		}
	}
	return "-"
}

func containersOf(p *corev1.Pod) string {
	var parts []string
	for _, group := range []struct {
		kind string
		sts  []corev1.ContainerStatus
	}{{"init", p.Status.InitContainerStatuses}, {"", p.Status.ContainerStatuses}} {
		for _, cs := range group.sts {
			state := "waiting"
			switch {
			case cs.State.Running != nil:
				state = "running"
			case cs.State.Terminated != nil:
				state = fmt.Sprintf("exited %d", cs.State.Terminated.ExitCode)
			}
			name := cs.Name
			if group.kind != "" {
				name = group.kind + ":" + name
			}
			parts = append(parts, name+" "+state)
		}
	}
	return strings.Join(parts, ", ")
}
