package deploy_test

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/telemetry"
)

// sentinelPort is Redis Sentinel's port, opened wherever Redis is, ready for
// REDIS_SENTINEL_ADDRS.
const sentinelPort = 26379

// target is something a container connects to: a host and port from its
// configuration.
type target struct {
	what string // the setting it comes from
	host string
	port int32
}

// targets lists what a container's command connects to, read from the
// configuration it loads (defaults included), Secret files and all.
func (r *rendered) targets(t *testing.T, where string, pod *corev1.PodSpec, c corev1.Container) []target {
	t.Helper()
	env, _ := r.configEnviron(t, where, pod, c, nil)
	e := pairs(env)
	var db *config.Database
	var rd *config.Redis
	var api *config.StripeAPI
	var err error
	switch line := strings.Join(c.Command, " "); line {
	case "/worker":
		var cfg config.Worker
		cfg, err = config.LoadWorker(e)
		db, rd, api = &cfg.Database, &cfg.Redis, &cfg.StripeAPI
	case "/worker migrate":
		var cfg config.Admin
		cfg, err = config.LoadAdmin(e)
		db = &cfg.Database
	case "/ingest":
		var cfg config.Ingest
		cfg, err = config.LoadIngest(e)
		db, rd = &cfg.Database, &cfg.Redis
	case "/worker webui":
		var cfg config.WebUI
		cfg, err = config.LoadWebUI(e)
		db, rd = &cfg.Database, &cfg.Redis
	default:
		t.Fatalf("%s: no check knows what %q connects to", where, line)
	}
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	var out []target
	if db != nil {
		out = append(out, databaseTargets(t, where, db.URL)...)
	}
	switch {
	case rd != nil && rd.UsesSentinel():
		for _, a := range rd.SentinelAddrs {
			host, port, err := net.SplitHostPort(a)
			n, perr := strconv.Atoi(port)
			if err != nil || perr != nil {
				t.Fatalf("%s: REDIS_SENTINEL_ADDRS holds %q", where, a)
			}
			out = append(out, target{"REDIS_SENTINEL_ADDRS", host, int32(n)})
		}
		// The master is wherever the sentinels say, which no setting
		// tells: taken to be outside the cluster on Redis's usual port.
		out = append(out, target{"REDIS master, as Sentinel names it", "", 6379})
	case rd != nil:
		out = append(out, target{"REDIS_HOST/REDIS_PORT", rd.Host, int32(rd.Port)})
	}
	if api != nil {
		u, err := url.Parse(api.Base)
		if err != nil {
			t.Fatalf("%s: STRIPE_API_BASE: %v", where, err)
		}
		out = append(out, target{"STRIPE_API_BASE", u.Hostname(), portOf(t, where, u, map[string]string{"https": "443", "http": "80"}[u.Scheme])})
	}
	return append(out, otlpTargets(t, where, c, e)...)
}

// otlpTargets is the OpenTelemetry collector a command that traces sends
// its spans to, when its environment e turns tracing on.
func otlpTargets(t *testing.T, where string, c corev1.Container, e []string) []target {
	t.Helper()
	if !slices.Contains(commands[strings.Join(c.Command, " ")].vars, "OTEL_EXPORTER_OTLP_ENDPOINT") {
		return nil
	}
	on, err := telemetry.Check(e)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if !on {
		return nil
	}
	env := map[string]string{}
	for _, kv := range e {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	what := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	if env[what] == "" {
		what = "OTEL_EXPORTER_OTLP_ENDPOINT"
	}
	u, err := url.Parse(env[what])
	if err != nil {
		t.Fatalf("%s: %s: %v", where, what, err)
	}
	return []target{{what, u.Hostname(), portOf(t, where, u, map[string]string{"https": "443", "http": "80"}[u.Scheme])}}
}

// databaseTargets are the servers a DATABASE_URL makes the driver try, as
// pgx itself parses it: every host of a multi-host URL
// (postgres://u@pg-1:5432,pg-2:5433/db), in order.
func databaseTargets(t *testing.T, where, dbURL string) []target {
	t.Helper()
	pc, err := pgconn.ParseConfig(dbURL)
	if err != nil {
		// pgx's error quotes the URL, password and all: never print it.
		t.Fatalf("%s: DATABASE_URL does not parse as pgx parses it", where)
	}
	out := []target{{"DATABASE_URL", pc.Host, int32(pc.Port)}}
	for _, fb := range pc.Fallbacks {
		tg := target{"DATABASE_URL", fb.Host, int32(fb.Port)}
		if !slices.Contains(out, tg) {
			out = append(out, tg)
		}
	}
	for _, tg := range out {
		if tg.host == "" || strings.HasPrefix(tg.host, "/") {
			t.Fatalf("%s: DATABASE_URL names no TCP host (%q)", where, tg.host)
		}
	}
	return out
}

func portOf(t *testing.T, where string, u *url.URL, def string) int32 {
	t.Helper()
	p := u.Port()
	if p == "" {
		p = def
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s: %s has port %q", where, u.Redacted(), p)
	}
	return int32(n)
}

// destination is where a connection lands, as a NetworkPolicy sees it
// (after a Service's translation): a pod of the cluster, or an address
// outside it (pod == nil).
type destination struct {
	nsLabels, pod map[string]string
	proto         corev1.Protocol
	port          int32
}

func (d destination) String() string {
	where := "outside the cluster"
	if d.pod != nil {
		where = fmt.Sprintf("pods %v in namespace %v", d.pod, d.nsLabels)
	}
	return fmt.Sprintf("%s %d %s", d.proto, d.port, where)
}

// kubeDNS is the cluster's resolver as most distributions label it.
func kubeDNS(proto corev1.Protocol) destination {
	return destination{nsLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"},
		pod: map[string]string{"k8s-app": "kube-dns"}, proto: proto, port: 53}
}

// resolve is where a connection to t lands: a Service of the overlay
// (dev's throwaway backends) leads to its pods' port; any other host is
// taken to be outside the cluster (a managed Postgres or Redis, Stripe).
func (r *rendered) resolve(t *testing.T, where string, tg target) destination {
	t.Helper()
	ns := r.namespaces[0].Name
	for _, s := range r.services {
		if !slices.Contains([]string{s.Name, s.Name + "." + ns, s.Name + "." + ns + ".svc", s.Name + "." + ns + ".svc.cluster.local"}, tg.host) {
			continue
		}
		for _, sp := range s.Spec.Ports {
			if sp.Port != tg.port {
				continue
			}
			for _, d := range r.deployments {
				if !selects(t, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, d.Spec.Template.Labels) {
					continue
				}
				for _, c := range d.Spec.Template.Spec.Containers {
					if p := containerPort(c, sp.TargetPort); p != 0 {
						proto := sp.Protocol
						if proto == "" {
							proto = corev1.ProtocolTCP
						}
						return destination{nsLabels: map[string]string{"kubernetes.io/metadata.name": ns},
							pod: d.Spec.Template.Labels, proto: proto, port: p}
					}
				}
			}
		}
		t.Fatalf("%s: %s %s:%d is Service %s, which leads to no pod's port", where, tg.what, tg.host, tg.port, s.Name)
	}
	return destination{proto: corev1.ProtocolTCP, port: tg.port}
}

// egressRules are the egress rules of the policies that restrict a pod's
// egress, and whether any does (if none, all egress is allowed).
func (r *rendered) egressRules(t *testing.T, d *appsv1.Deployment) (rules []networkingv1.NetworkPolicyEgressRule, restricted bool) {
	t.Helper()
	for _, np := range r.netpols {
		if !selects(t, &np.Spec.PodSelector, d.Spec.Template.Labels) {
			continue
		}
		if slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			restricted = true
			rules = append(rules, np.Spec.Egress...)
		}
	}
	return rules, restricted
}

// allows reports whether rules let a pod of namespace ns connect to dest.
func allows(t *testing.T, rules []networkingv1.NetworkPolicyEgressRule, ns string, dest destination) bool {
	t.Helper()
	for _, rule := range rules {
		portOK := len(rule.Ports) == 0
		for _, p := range rule.Ports {
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			portOK = portOK || (proto == dest.proto && (p.Port == nil || p.Port.IntValue() == int(dest.port)))
		}
		if !portOK {
			continue
		}
		if len(rule.To) == 0 {
			return true
		}
		for _, peer := range rule.To {
			switch {
			case peer.IPBlock != nil:
				// An address block: taken to hold an outside destination
				// (its address is not known here), never a pod's.
				if dest.pod == nil {
					return true
				}
			case dest.pod == nil:
			case peer.NamespaceSelector == nil:
				// Pods of the policy's own namespace.
				if dest.nsLabels["kubernetes.io/metadata.name"] == ns && matches(t, peer.PodSelector, dest.pod) {
					return true
				}
			default:
				if matches(t, peer.NamespaceSelector, dest.nsLabels) && matches(t, peer.PodSelector, dest.pod) {
					return true
				}
			}
		}
	}
	return false
}

// matches is a NetworkPolicy peer's selector: nil or empty selects all.
func matches(t *testing.T, sel *metav1.LabelSelector, set map[string]string) bool {
	t.Helper()
	if sel == nil {
		return true
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return s.Matches(labels.Set(set))
}

// The worker's egress is limited to what it connects to: DNS to the
// cluster's resolver, Postgres and Redis (and Sentinel) where its
// configuration points, Stripe's API on 443; nothing else, and no rule
// that opens every port. Any other pod whose egress is limited reaches
// everything its containers' configuration points at (the dev overlay's
// throwaway Postgres and Redis included) and DNS.
func TestEgressIsWhatTheConfigurationNeeds(t *testing.T) {
	t.Parallel()
	for _, o := range overlays {
		r := render(t, o)
		ns := r.namespaces[0].Name
		for _, d := range r.ours() {
			rules, restricted := r.egressRules(t, d)
			if !restricted {
				if d.Name == "stripe-webhooks-worker" {
					t.Errorf("%s: no NetworkPolicy limits the worker's egress", o)
				}
				continue
			}
			where := o + "/" + d.Name
			for _, rule := range rules {
				if len(rule.Ports) == 0 {
					t.Errorf("%s: an egress rule names no port: it opens every port (to %v)", where, rule.To)
				}
				for _, p := range rule.Ports {
					if p.Port == nil || p.Port.Type != intstr.Int || p.EndPort != nil {
						t.Errorf("%s: egress port %v: want one port by number", where, p.Port)
					}
				}
			}
			needed := []destination{kubeDNS(corev1.ProtocolUDP), kubeDNS(corev1.ProtocolTCP)}
			var redis bool
			for _, c := range containers(d) {
				cw := where + "/" + c.Name
				for _, tg := range r.targets(t, cw, &d.Spec.Template.Spec, c) {
					dest := r.resolve(t, cw, tg)
					if !allows(t, rules, ns, dest) {
						t.Errorf("%s: %s points at %s:%d (%s), which its egress policy does not allow", cw, tg.what, tg.host, tg.port, dest)
					}
					needed = append(needed, dest)
					redis = redis || strings.HasPrefix(tg.what, "REDIS")
				}
			}
			if redis {
				needed = append(needed, destination{proto: corev1.ProtocolTCP, port: sentinelPort})
			}
			for _, proto := range []corev1.Protocol{corev1.ProtocolUDP, corev1.ProtocolTCP} {
				if !allows(t, rules, ns, kubeDNS(proto)) {
					t.Errorf("%s: DNS (%s 53) to kube-dns in kube-system is not allowed", where, proto)
				}
			}
			// Nothing beyond: each allowed port is one a destination needs,
			// and DNS goes to the cluster's resolver only.
			want := map[string]bool{}
			for _, n := range needed {
				want[fmt.Sprintf("%s/%d", n.proto, n.port)] = true
			}
			var extra []string
			for _, rule := range rules {
				for _, p := range rule.Ports {
					proto := corev1.ProtocolTCP
					if p.Protocol != nil {
						proto = *p.Protocol
					}
					if k := fmt.Sprintf("%s/%d", proto, p.Port.IntValue()); !want[k] {
						extra = append(extra, k)
					}
					if p.Port.IntValue() == 53 && (len(rule.To) == 0 || slices.ContainsFunc(rule.To, func(peer networkingv1.NetworkPolicyPeer) bool {
						return peer.IPBlock == nil && (peer.NamespaceSelector == nil || len(peer.NamespaceSelector.MatchLabels)+len(peer.NamespaceSelector.MatchExpressions) == 0 ||
							peer.PodSelector == nil || len(peer.PodSelector.MatchLabels)+len(peer.PodSelector.MatchExpressions) == 0)
					})) {
						t.Errorf("%s: DNS egress goes beyond the cluster's resolver (to %v)", where, rule.To)
					}
				}
			}
			sort.Strings(extra)
			if len(extra) > 0 {
				t.Errorf("%s: egress allows %v, which nothing the pod runs connects to", where, slices.Compact(extra))
			}
		}
	}
}

// The policy check itself: it finds a blocked target and an open rule.
func TestEgressCheckCatchesMistakes(t *testing.T) {
	t.Parallel()
	tcp := corev1.ProtocolTCP
	port := func(n int) networkingv1.NetworkPolicyPort {
		p := intstr.FromInt32(int32(n))
		return networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &p}
	}
	rules := []networkingv1.NetworkPolicyEgressRule{
		{Ports: []networkingv1.NetworkPolicyPort{port(443)}},
		{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}},
			Ports: []networkingv1.NetworkPolicyPort{port(5432)}},
	}
	outside := destination{proto: tcp, port: 443}
	db := destination{nsLabels: map[string]string{"kubernetes.io/metadata.name": "ns"}, pod: map[string]string{"app": "db"}, proto: tcp, port: 5432}
	if !allows(t, rules, "ns", outside) || !allows(t, rules, "ns", db) {
		t.Error("allowed destinations were refused")
	}
	for _, d := range []destination{
		{proto: tcp, port: 5432}, // only to the db pods
		{proto: corev1.ProtocolUDP, port: 443},
		{nsLabels: map[string]string{"kubernetes.io/metadata.name": "other"}, pod: map[string]string{"app": "db"}, proto: tcp, port: 5432},
		kubeDNS(corev1.ProtocolUDP),
	} {
		if allows(t, rules, "ns", d) {
			t.Errorf("%s was allowed", d)
		}
	}
}
