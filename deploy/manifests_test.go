package deploy_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"stripe-webhooks/pkg/config"
)

// Every variable a container sets is one its command reads, and the
// resolved environment passes the command's own configuration checks (so
// every required variable is set and well-formed). A <NAME>_FILE variable
// names a file of a Secret volume the container mounts, holding the Secret's
// key NAME; the command reads it from a copy laid out as the kubelet does.
func TestEnvironmentMatchesConfiguration(t *testing.T) {
	t.Parallel()
	for _, o := range overlays {
		r := render(t, o)
		for _, d := range r.ours() {
			for _, c := range containers(d) {
				if sidecar(c) {
					continue
				}
				where := o + "/" + d.Name + "/" + c.Name
				cmd := commandOf(t, where, c.Command)
				for name := range r.environ(t, c) {
					if !slices.Contains(cmd.vars, name) && !runtimeVars[name] {
						t.Errorf("%s sets %s, which %q does not read", where, name, c.Command)
					}
				}
				env, _ := r.configEnviron(t, where, &d.Spec.Template.Spec, c, nil)
				if err := cmd.load(pairs(env)); err != nil {
					t.Errorf("%s: its environment fails the configuration: %v", where, err)
				}
			}
		}
	}
}

// Each probe names a declared container port; that port is the one the
// container's configuration makes the binary listen on.
func TestProbesUseDeclaredPortsTheBinaryListensOn(t *testing.T) {
	t.Parallel()
	for _, o := range overlays {
		r := render(t, o)
		for _, d := range r.ours() {
			for _, c := range d.Spec.Template.Spec.Containers {
				if sidecar(c) {
					continue
				}
				where := o + "/" + d.Name + "/" + c.Name
				cmd := commandOf(t, where, c.Command)
				if c.LivenessProbe == nil || c.ReadinessProbe == nil {
					t.Errorf("%s lacks a liveness or readiness probe", where)
					continue
				}
				env := r.environ(t, c)
				listen := env[cmd.portVar]
				if i := strings.LastIndex(listen, ":"); i >= 0 {
					listen = listen[i+1:]
				}
				for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
					if p.HTTPGet == nil {
						t.Errorf("%s: probe is not an HTTP GET", where)
						continue
					}
					port := containerPort(c, p.HTTPGet.Port)
					if port == 0 {
						t.Errorf("%s: probe port %s is not a declared container port", where, p.HTTPGet.Port.String())
					}
					if strconv.Itoa(int(port)) != listen {
						t.Errorf("%s: probe port %d, but %s=%q makes the binary listen elsewhere", where, port, cmd.portVar, env[cmd.portVar])
					}
				}
			}
		}
	}
}

func containerPort(c corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	return 0
}

func selects(t *testing.T, sel *metav1.LabelSelector, set map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return !s.Empty() && s.Matches(labels.Set(set))
}

// Selectors match the labels they are meant to, and what they point at exists.
func TestSelectorsMatchLabels(t *testing.T) {
	t.Parallel()
	for _, o := range overlays {
		r := render(t, o)
		podsOf := func(sel *metav1.LabelSelector) []*appsv1.Deployment {
			var out []*appsv1.Deployment
			for _, d := range r.deployments {
				if selects(t, sel, d.Spec.Template.Labels) {
					out = append(out, d)
				}
			}
			return out
		}
		for _, d := range r.deployments {
			if !selects(t, d.Spec.Selector, d.Spec.Template.Labels) {
				t.Errorf("%s: Deployment %s's selector does not match its pods", o, d.Name)
			}
			if got := podsOf(d.Spec.Selector); len(got) != 1 {
				t.Errorf("%s: Deployment %s's selector matches %d Deployments' pods", o, d.Name, len(got))
			}
		}
		for _, s := range r.services {
			matched := podsOf(&metav1.LabelSelector{MatchLabels: s.Spec.Selector})
			if len(matched) != 1 {
				t.Errorf("%s: Service %s selects %d Deployments, want 1", o, s.Name, len(matched))
				continue
			}
			for _, p := range s.Spec.Ports {
				found := false
				for _, c := range matched[0].Spec.Template.Spec.Containers {
					found = found || containerPort(c, p.TargetPort) != 0
				}
				if !found {
					t.Errorf("%s: Service %s port %s targets %s, not a port of %s", o, s.Name, p.Name, p.TargetPort.String(), matched[0].Name)
				}
			}
		}
		for _, p := range r.pdbs {
			if len(podsOf(p.Spec.Selector)) != 1 {
				t.Errorf("%s: PodDisruptionBudget %s matches no single Deployment", o, p.Name)
			}
		}
		for _, np := range r.netpols {
			matched := podsOf(&np.Spec.PodSelector)
			if len(matched) != 1 {
				t.Errorf("%s: NetworkPolicy %s matches %d Deployments", o, np.Name, len(matched))
				continue
			}
			for _, rule := range np.Spec.Ingress {
				for _, p := range rule.Ports {
					if !slices.ContainsFunc(matched[0].Spec.Template.Spec.Containers, func(c corev1.Container) bool { return containerPort(c, *p.Port) != 0 }) {
						t.Errorf("%s: NetworkPolicy %s opens port %s, which %s does not serve", o, np.Name, p.Port.String(), matched[0].Name)
					}
				}
			}
		}
		for _, h := range r.hpas {
			if h.Spec.ScaleTargetRef.Kind != "Deployment" || r.deployment(t, h.Spec.ScaleTargetRef.Name) == nil {
				t.Errorf("%s: HPA %s targets nothing", o, h.Name)
			}
		}
		for _, so := range r.scaledObjects {
			r.deployment(t, so.Spec.ScaleTargetRef.Name)
		}
		for _, sm := range r.serviceMonitors {
			ports := map[string]bool{}
			for _, s := range r.services {
				if selects(t, &sm.Spec.Selector, s.Labels) {
					for _, p := range s.Spec.Ports {
						ports[p.Name] = true
					}
				}
			}
			for _, ep := range sm.Spec.Endpoints {
				if !ports[ep.Port] {
					t.Errorf("%s: ServiceMonitor %s scrapes port %q, which no selected Service has", o, sm.Name, ep.Port)
				}
			}
		}
	}
}

// Secrets reach the containers as files of a mounted Secret, never as
// variables (which every process of the container and `kubectl describe`
// see, and which never change in a running pod): mounted read-only, as a
// directory (a subPath mount is never updated, so the ingest could not
// pick up a rolled signing secret), mode 0440 with the pod's fsGroup (the
// services' user reads them, no one else), and each projected key is one
// a container of the pod reads.
func TestSecretsAreMountedAsFiles(t *testing.T) {
	t.Parallel()
	for _, o := range overlays {
		r := render(t, o)
		for _, s := range r.secrets {
			if s.Immutable != nil && *s.Immutable {
				t.Errorf("%s: Secret %s is immutable: a changed value would never reach the pods", o, s.Name)
			}
		}
		for _, d := range r.ours() {
			pod := d.Spec.Template.Spec
			read := map[string]bool{} // volume/rel the containers read
			for _, c := range containers(d) {
				where := o + "/" + d.Name + "/" + c.Name
				for _, e := range c.Env {
					if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && slices.Contains(config.FileVars, e.Name) {
						t.Errorf("%s: %s comes from Secret %s as a variable: mount the Secret and set %s_FILE", where, e.Name, e.ValueFrom.SecretKeyRef.Name, e.Name)
					}
					if name, ok := strings.CutSuffix(e.Name, "_FILE"); ok && (slices.Contains(config.FileVars, name) || sidecar(c)) {
						if _, volume, rel, _, err := secretFile(&pod, c, e.Value); err == nil {
							read[volume+"/"+rel] = true
						}
					}
				}
				for _, m := range c.VolumeMounts {
					for _, v := range pod.Volumes {
						if v.Name != m.Name || v.Secret == nil {
							continue
						}
						if !m.ReadOnly {
							t.Errorf("%s: Secret volume %s is mounted read-write", where, m.Name)
						}
						if m.SubPath != "" || m.SubPathExpr != "" {
							t.Errorf("%s: Secret volume %s is mounted with subPath, which the kubelet never updates: mount the directory", where, m.Name)
						}
					}
				}
			}
			for _, v := range pod.Volumes {
				if v.Secret == nil {
					continue
				}
				where := o + "/" + d.Name + "/volume " + v.Name
				sc := pod.SecurityContext
				if sc == nil || sc.FSGroup == nil || sc.RunAsGroup == nil || *sc.FSGroup != *sc.RunAsGroup {
					t.Errorf("%s: the pod needs fsGroup equal to runAsGroup, so that its user reads the Secret's files", where)
				}
				modes := []*int32{v.Secret.DefaultMode}
				for _, it := range v.Secret.Items {
					if it.Mode != nil {
						modes = append(modes, it.Mode)
					}
					if !read[v.Name+"/"+it.Path] {
						t.Errorf("%s projects key %s, which no container of the pod reads", where, it.Key)
					}
				}
				if len(v.Secret.Items) == 0 {
					t.Errorf("%s projects every key of Secret %s: list the ones the pod reads in items", where, v.Secret.SecretName)
				}
				for _, m := range modes {
					if m == nil || *m&^0o440 != 0 || *m&0o040 == 0 {
						t.Errorf("%s: file mode %s, want 0440 (read by owner and fsGroup only)", where, octal(m))
					}
				}
			}
		}
	}
}

func octal(m *int32) string {
	if m == nil {
		return "unset (0644)"
	}
	return "0" + strconv.FormatInt(int64(*m), 8)
}

// Each overlay applies the Stripe mode its account is for, in ingest and
// worker (and the web UI's replay) alike: production live events only, dev test events only.
func TestLivemodeOfOverlays(t *testing.T) {
	t.Parallel()
	want := map[string]string{"production": "live", "production-sentinel": "live", "production-sso": "live", "dev": "test"}
	for _, o := range overlays {
		r := render(t, o)
		for _, name := range []string{"stripe-webhooks-ingest", "stripe-webhooks-worker", "stripe-webhooks-webui"} {
			d := r.deployment(t, name)
			c := d.Spec.Template.Spec.Containers[0]
			if got := r.environ(t, c)["STRIPE_LIVEMODE"]; got != want[o] {
				t.Errorf("%s/%s: STRIPE_LIVEMODE %q, want %q", o, name, got, want[o])
			}
		}
	}
}

// Every container of every overlay, the dev overlay's throwaway Postgres
// and Redis included, is hardened (see hardeningProblems); the services'
// pods also spread, have disruption budgets, and grace periods longer than
// the work they must let finish.
func TestWorkloadsAreHardened(t *testing.T) {
	t.Parallel()
	for _, o := range overlays {
		r := render(t, o)
		for _, d := range r.deployments {
			for _, p := range hardeningProblems(d) {
				t.Errorf("%s/%s: %s", o, d.Name, p)
			}
		}
		for _, d := range r.ours() {
			pod := d.Spec.Template.Spec
			main := pod.Containers[0]
			env := r.environ(t, main)
			grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
			switch commandOf(t, d.Name, main.Command).binary + strings.Join(main.Command[1:], " ") {
			case "worker":
				// A job whose group fails is retried on its own with a fresh
				// deadline: it may run for two job timeouts.
				job, _ := time.ParseDuration(env["WEBHOOK_JOB_TIMEOUT"])
				if grace <= 2*job {
					t.Errorf("%s/%s: terminationGracePeriodSeconds %s is not above twice WEBHOOK_JOB_TIMEOUT %s", o, d.Name, grace, job)
				}
			case "ingest":
				shutdown, _ := time.ParseDuration(env["SHUTDOWN_TIMEOUT"])
				var preStop time.Duration
				if main.Lifecycle != nil && main.Lifecycle.PreStop != nil && main.Lifecycle.PreStop.Sleep != nil {
					preStop = time.Duration(main.Lifecycle.PreStop.Sleep.Seconds) * time.Second
				}
				if grace <= shutdown+preStop {
					t.Errorf("%s/%s: terminationGracePeriodSeconds %s is not above preStop %s + SHUTDOWN_TIMEOUT %s", o, d.Name, grace, preStop, shutdown)
				}
			}
			if d.Name != "stripe-webhooks-webui" {
				if len(pod.TopologySpreadConstraints) == 0 {
					t.Errorf("%s/%s: no topology spread", o, d.Name)
				}
				covered := false
				for _, p := range r.pdbs {
					covered = covered || selects(t, p.Spec.Selector, d.Spec.Template.Labels)
				}
				if !covered {
					t.Errorf("%s/%s: no PodDisruptionBudget", o, d.Name)
				}
			}
		}
		if r.deployment(t, "stripe-webhooks-ingest").Spec.Replicas == nil {
			t.Errorf("%s: ingest replicas unset", o)
		}
		if h := r.hpas[0]; h.Spec.ScaleTargetRef.Name != "stripe-webhooks-ingest" || len(h.Spec.Metrics) != 1 || h.Spec.Metrics[0].Resource == nil || h.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
			t.Errorf("%s: the HPA must scale ingest on CPU", o)
		}
	}
	r := render(t, "production")
	for name, want := range map[string]int32{"stripe-webhooks-ingest": 2, "stripe-webhooks-worker": 3, "stripe-webhooks-webui": 1} {
		if got := *r.deployment(t, name).Spec.Replicas; got != want {
			t.Errorf("production: %s has %d replicas, want %d", name, got, want)
		}
	}
}

// The workers' and the web UI's ports are reachable from inside the cluster only.
func TestNetworkPoliciesKeepOpsPortsInCluster(t *testing.T) {
	t.Parallel()
	for _, o := range overlays {
		r := render(t, o)
		for _, name := range []string{"stripe-webhooks-worker", "stripe-webhooks-webui"} {
			d := r.deployment(t, name)
			var covering int
			for _, np := range r.netpols {
				if !selects(t, &np.Spec.PodSelector, d.Spec.Template.Labels) {
					continue
				}
				covering++
				if !slices.Contains(np.Spec.PolicyTypes, "Ingress") {
					t.Errorf("%s: NetworkPolicy %s does not restrict ingress", o, np.Name)
				}
				for _, rule := range np.Spec.Ingress {
					if len(rule.From) == 0 {
						t.Errorf("%s: NetworkPolicy %s admits any source", o, np.Name)
					}
					for _, peer := range rule.From {
						if peer.IPBlock != nil || (peer.NamespaceSelector == nil && peer.PodSelector == nil) {
							t.Errorf("%s: NetworkPolicy %s admits sources outside the cluster", o, np.Name)
						}
					}
				}
			}
			if covering == 0 {
				t.Errorf("%s: no NetworkPolicy covers %s", o, name)
			}
		}
	}
}

// `kubectl exec deploy/stripe-webhooks-worker -- /worker reconcile` (and
// resync, replay) run with the worker container's environment: it holds
// all they need once the Secret has a key.
func TestOpsCommandsRunInTheWorkerContainer(t *testing.T) {
	t.Parallel()
	for _, o := range overlays {
		r := render(t, o)
		d := r.deployment(t, "stripe-webhooks-worker")
		c := d.Spec.Template.Spec.Containers[0]
		where := o + "/" + d.Name + "/" + c.Name
		env, _ := r.configEnviron(t, where, &d.Spec.Template.Spec, c, map[string]string{"STRIPE_API_KEY": "rk_test_deploy"})
		if _, ok := env["STRIPE_API_KEY_FILE"]; !ok {
			t.Errorf("%s has no STRIPE_API_KEY_FILE: periodic reconcile can never be turned on", where)
		}
		if _, err := config.LoadReconcile(pairs(env)); err != nil {
			t.Errorf("%s: `worker reconcile` and `resync` would fail: %v", where, err)
		}
		if _, err := config.LoadAdmin(pairs(env)); err != nil {
			t.Errorf("%s: `worker replay` would fail: %v", where, err)
		}
	}
}

// StripeWebhooksReconcileStale counts three reconcile intervals in hours it
// cannot read from the ConfigMap: they must agree.
func TestReconcileAlertMatchesTheInterval(t *testing.T) {
	t.Parallel()
	r := render(t, "production")
	c := r.deployment(t, "stripe-webhooks-worker").Spec.Template.Spec.Containers[0]
	interval, err := time.ParseDuration(r.environ(t, c)["STRIPE_RECONCILE_INTERVAL"])
	if err != nil || interval <= 0 {
		t.Fatalf("the worker's STRIPE_RECONCILE_INTERVAL: %v", err)
	}
	var expr string
	for _, g := range r.rules[0].Spec.Groups {
		for _, rule := range g.Rules {
			if rule.Alert == "StripeWebhooksReconcileStale" {
				expr = rule.Expr.String()
			}
		}
	}
	if expr == "" {
		t.Fatal("no alert StripeWebhooksReconcileStale")
	}
	for _, want := range []string{
		"[" + promDuration(3*interval) + "]",
		"[" + promDuration(interval) + "] offset " + promDuration(2*interval),
		fmt.Sprintf("> 3 * %d", int(interval.Seconds())),
	} {
		if !strings.Contains(expr, want) {
			t.Errorf("StripeWebhooksReconcileStale lacks %q: it does not count three STRIPE_RECONCILE_INTERVAL (%s)", want, interval)
		}
	}
}

func promDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}
