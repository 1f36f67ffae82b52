package deploy_test

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/oauth2-proxy/mockoidc"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/testenv"
)

// ssoOverlays are the overlays with components/sso.
var ssoOverlays = map[string]bool{"production-sso": true}

// ssoSecret is the Secret of the provider's settings components/sso reads.
const ssoSecret = "stripe-webhooks-sso"

// proxyIdentityHeaders are the request headers oauth2-proxy sets to the
// signed-in user's values with --pass-user-headers, after removing the
// client's (--skip-auth-strip-headers). X-Auth-Request-* are not among
// them: oauth2-proxy sets those on its answers only, and passes a client's
// own to the upstream (worker/internal/ssotest shows both).
var proxyIdentityHeaders = []string{"X-Forwarded-Email", "X-Forwarded-User", "X-Forwarded-Preferred-Username"}

const proxyGroupsHeader = "X-Forwarded-Groups"

// webUIPod is the web UI's Deployment, its UI container and, with
// components/sso, the proxy beside it (nil without).
func webUIPod(t *testing.T, r *rendered) (d *appsv1.Deployment, ui corev1.Container, proxy *corev1.Container) {
	t.Helper()
	d = r.deployment(t, "stripe-webhooks-webui")
	for i, c := range d.Spec.Template.Spec.Containers {
		switch {
		case sidecar(c) && proxy == nil:
			proxy = &d.Spec.Template.Spec.Containers[i]
		case c.Name == "webui" && i == 0:
			ui = c
		default:
			t.Fatalf("overlays/%s: the web UI's pod runs an unexpected container %s", r.overlay, c.Name)
		}
	}
	return d, ui, proxy
}

// proxyFlags reads oauth2-proxy's arguments, each --name=value (the only
// form allowed here, so that no value is mistaken for a flag).
func proxyFlags(t *testing.T, where string, args []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, a := range args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok || !strings.HasPrefix(a, "--") {
			t.Errorf("%s: argument %q is not --name=value", where, a)
			continue
		}
		if _, dup := out[name]; dup {
			t.Errorf("%s: --%s given twice", where, name)
		}
		out[name] = value
	}
	return out
}

// ssoTemplate is the Secret components/sso/secret.template.yaml describes.
func ssoTemplate(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("kubernetes", "components", "sso", "secret.template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var s corev1.Secret
	if err := yaml.UnmarshalStrict(b, &s); err != nil {
		t.Fatalf("components/sso/secret.template.yaml: %v", err)
	}
	if s.Name != ssoSecret {
		t.Fatalf("components/sso/secret.template.yaml names %s, the component %s", s.Name, ssoSecret)
	}
	return s.StringData
}

// proxyEnviron is the proxy container's environment as the kubelet makes
// it, its Secret keys from the component's template, or from override.
// Each Secret key is the variable of the same name.
func (r *rendered) proxyEnviron(t *testing.T, where string, c corev1.Container, override map[string]string) map[string]string {
	t.Helper()
	tmpl := ssoTemplate(t)
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := tmpl[ref.Key]
			if ref.Name != ssoSecret || !ok || ref.Key != e.Name {
				t.Errorf("%s: %s reads Secret %s key %s: want key %s of %s's template", where, e.Name, ref.Name, ref.Key, e.Name, ssoSecret)
			}
			if o, ok := override[ref.Key]; ok {
				v = o
			}
			env[e.Name] = v
		case e.ValueFrom.ResourceFieldRef != nil:
			env[e.Name] = "134217728"
		default:
			t.Errorf("%s: %s has a source no check covers", where, e.Name)
		}
	}
	return env
}

// With components/sso the web UI takes identities from the proxy beside it
// and from nowhere else: WEBUI_AUTH=proxy, no basic-auth login left,
// WEBUI_TRUSTED_PROXIES holding loopback addresses only (so that no other
// pod can speak for a user, whether or not NetworkPolicy is enforced) and
// the address the proxy's --upstream connects from, the UI at that port,
// and the UI's user and groups headers among those oauth2-proxy sets and
// strips. Without the component the web UI keeps its basic-auth login.
func TestSSOWebUITrustsOnlyTheProxyBesideIt(t *testing.T) {
	t.Parallel()
	for _, o := range overlays {
		r := render(t, o)
		d, ui, proxy := webUIPod(t, r)
		where := o + "/" + d.Name
		env, _ := r.configEnviron(t, where, &d.Spec.Template.Spec, ui, nil)
		cfg, err := config.LoadWebUI(pairs(env))
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if !ssoOverlays[o] {
			if proxy != nil || cfg.Auth != config.WebUIAuthBasic {
				t.Errorf("%s: without components/sso, WEBUI_AUTH %q and a proxy %v", where, cfg.Auth, proxy != nil)
			}
			continue
		}
		if proxy == nil {
			t.Fatalf("%s: components/sso put no oauth2-proxy in the web UI's pod", where)
		}
		if cfg.Auth != config.WebUIAuthProxy || cfg.LoginUser != "" || cfg.LoginPassword != "" || env["WEBUI_PASSWORD_FILE"] != "" {
			t.Errorf("%s: WEBUI_AUTH %q, basic-auth login left: %v", where, cfg.Auth, cfg.LoginUser != "" || env["WEBUI_PASSWORD_FILE"] != "")
		}
		for _, it := range d.Spec.Template.Spec.Volumes[0].Secret.Items {
			if it.Key == "WEBUI_PASSWORD" {
				t.Errorf("%s still mounts WEBUI_PASSWORD", where)
			}
		}
		for _, p := range cfg.TrustedPrefixes() {
			if !loopbackOnly(p) {
				t.Errorf("%s: WEBUI_TRUSTED_PROXIES holds %s, beyond the pod's loopback: other pods could speak for users", where, p)
			}
		}
		checkProxyToUI(t, where, cfg, proxyFlags(t, where+"/"+proxy.Name, proxy.Args))
		if len(cfg.OperatorGroups) == 0 {
			t.Errorf("%s: no WEBUI_OPERATOR_GROUPS", where)
		}
	}
}

// checkProxyToUI checks the proxy's way to the UI against the UI's
// configuration: --upstream is the UI's port at a loopback address that
// WEBUI_TRUSTED_PROXIES holds (the address it connects from, too), and the
// UI reads user and groups headers the proxy sets and strips.
func checkProxyToUI(t *testing.T, where string, cfg config.WebUI, flags map[string]string) {
	t.Helper()
	up, err := url.Parse(flags["upstream"])
	if err != nil || up.Scheme != "http" || up.Path != "/" {
		t.Fatalf("%s: --upstream %q: want http://<loopback>:<WEBUI_ADDR's port>/", where, flags["upstream"])
	}
	from, err := netip.ParseAddr(up.Hostname())
	prefixes := cfg.TrustedPrefixes()
	if err != nil || !from.IsLoopback() || !slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(from) }) {
		t.Errorf("%s: the proxy connects to the UI from %s, which is not a loopback address in WEBUI_TRUSTED_PROXIES %v", where, up.Hostname(), prefixes)
	}
	if _, port, err := net.SplitHostPort(cfg.Addr); err != nil || up.Port() != port {
		t.Errorf("%s: --upstream port %s, the UI listens on %s", where, up.Port(), cfg.Addr)
	}
	if flags["pass-user-headers"] != "true" || flags["skip-auth-strip-headers"] != "true" {
		t.Errorf("%s: oauth2-proxy must set and strip the identity headers: --pass-user-headers=%q --skip-auth-strip-headers=%q",
			where, flags["pass-user-headers"], flags["skip-auth-strip-headers"])
	}
	if !slices.Contains(proxyIdentityHeaders, cfg.ProxyUserHeader) || cfg.ProxyGroupsHeader != proxyGroupsHeader {
		t.Errorf("%s: the UI reads %s and %s; oauth2-proxy sets (and strips) %v and %s",
			where, cfg.ProxyUserHeader, cfg.ProxyGroupsHeader, proxyIdentityHeaders, proxyGroupsHeader)
	}
}

// loopbackOnly reports whether every address of p is a loopback address.
func loopbackOnly(p netip.Prefix) bool {
	if p.Addr().Is4() {
		return p.Bits() >= 8 && netip.MustParsePrefix("127.0.0.0/8").Contains(p.Addr())
	}
	return p.Bits() == 128 && p.Addr().IsLoopback()
}

// With components/sso, only the proxy is reachable: the web UI's Service
// leads to the proxy's port, and the NetworkPolicies of the web UI's pod
// open that port alone (each rule names its ports), never the UI's. The
// proxy listens on its declared port, which its probes use.
func TestSSOOnlyTheProxyIsReachable(t *testing.T) {
	t.Parallel()
	for o := range ssoOverlays {
		r := render(t, o)
		d, ui, proxy := webUIPod(t, r)
		where := o + "/" + d.Name
		flags := proxyFlags(t, where, proxy.Args)
		_, listen, err := net.SplitHostPort(flags["http-address"])
		if err != nil || len(proxy.Ports) != 1 || strconv.Itoa(int(proxy.Ports[0].ContainerPort)) != listen {
			t.Fatalf("%s: oauth2-proxy listens on --http-address=%s, declares ports %v", where, flags["http-address"], proxy.Ports)
		}
		proxyPort := proxy.Ports[0].ContainerPort
		for _, p := range []*corev1.Probe{proxy.LivenessProbe, proxy.ReadinessProbe} {
			if p == nil || p.HTTPGet == nil || containerPort(*proxy, p.HTTPGet.Port) != proxyPort {
				t.Errorf("%s: oauth2-proxy's probes must be HTTP GETs on its port %d", where, proxyPort)
			}
		}
		for _, s := range r.services {
			if !selects(t, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, d.Spec.Template.Labels) {
				continue
			}
			for _, p := range s.Spec.Ports {
				if containerPort(*proxy, p.TargetPort) == 0 || containerPort(ui, p.TargetPort) != 0 {
					t.Errorf("%s: Service %s port %s leads to %s, not to the proxy", where, s.Name, p.Name, p.TargetPort.String())
				}
			}
		}
		opened := map[int32]bool{} // container ports; 0: one no container serves
		for _, np := range r.netpols {
			if !selects(t, &np.Spec.PodSelector, d.Spec.Template.Labels) {
				continue
			}
			if !slices.Contains(np.Spec.PolicyTypes, "Ingress") {
				t.Errorf("%s: NetworkPolicy %s does not restrict ingress", where, np.Name)
			}
			for _, rule := range np.Spec.Ingress {
				if len(rule.Ports) == 0 {
					t.Errorf("%s: NetworkPolicy %s has a rule that opens every port, the UI's too", where, np.Name)
				}
				for _, p := range rule.Ports {
					opened[containerPort(*proxy, *p.Port)+containerPort(ui, *p.Port)] = true
				}
			}
		}
		if len(opened) != 1 || !opened[proxyPort] {
			t.Errorf("%s: the web UI pod's NetworkPolicies open ports %v, want the proxy's %d alone", where, opened, proxyPort)
		}
	}
}

// The proxy runs the official image at the version `make oauth2-proxy`
// installs for the tests, pinned by that exact tag (and a digest, if one
// is given).
func TestSSOProxyImageIsPinned(t *testing.T) {
	t.Parallel()
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^OAUTH2_PROXY_VERSION \?= (v\S+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile sets no OAUTH2_PROXY_VERSION")
	}
	pinned := regexp.MustCompile(`^quay\.io/oauth2-proxy/oauth2-proxy:` + regexp.QuoteMeta(string(m[1])) + `(@sha256:[0-9a-f]{64})?$`)
	for o := range ssoOverlays {
		_, _, proxy := webUIPod(t, render(t, o))
		if !pinned.MatchString(proxy.Image) {
			t.Errorf("%s: oauth2-proxy image %s, want quay.io/oauth2-proxy/oauth2-proxy:%s[@sha256:…] (the tests' version)", o, proxy.Image, m[1])
		}
	}
}

// The provider's settings come from the Secret stripe-webhooks-sso, each
// key the variable of its name, every key of the template used; the client
// and cookie secrets only as files of that Secret mounted as a directory
// (never variables or arguments). The template's lists hold no blanks
// (oauth2-proxy does not trim them), never let in every e-mail domain, and
// allow every group of WEBUI_OPERATOR_GROUPS and WEBUI_VIEWER_GROUPS.
func TestSSOSettingsComeFromTheSecret(t *testing.T) {
	t.Parallel()
	tmpl := ssoTemplate(t)
	secret := []string{"OAUTH2_PROXY_CLIENT_SECRET", "OAUTH2_PROXY_COOKIE_SECRET"}
	for o := range ssoOverlays {
		r := render(t, o)
		d, ui, proxy := webUIPod(t, r)
		where := o + "/" + d.Name + "/" + proxy.Name
		env := r.proxyEnviron(t, where, *proxy, nil)
		used := map[string]bool{}
		for name, v := range env {
			key, isFile := strings.CutSuffix(name, "_FILE")
			switch {
			case slices.Contains(secret, name):
				t.Errorf("%s: %s is a variable: mount it and set %s_FILE", where, name, name)
			case isFile && slices.Contains(secret, key):
				_, _, _, k, err := secretFile(&d.Spec.Template.Spec, *proxy, v)
				if err != nil || k != key {
					t.Errorf("%s: %s=%s: key %q of a mounted Secret (%v), want %s", where, name, v, k, err, key)
				}
				used[key] = true
			case strings.HasPrefix(name, "OAUTH2_PROXY_"):
				used[name] = true
			}
		}
		for _, a := range proxy.Args {
			if strings.Contains(a, "secret") {
				t.Errorf("%s: argument %q: secrets come from the Secret's files", where, a)
			}
		}
		for key := range tmpl {
			if !used[key] {
				t.Errorf("%s: the template's key %s reaches no setting of the proxy", where, key)
			}
		}
		uiEnv, _ := r.configEnviron(t, where, &d.Spec.Template.Spec, ui, nil)
		cfg, err := config.LoadWebUI(pairs(uiEnv))
		if err != nil {
			t.Fatal(err)
		}
		domains, allowed := strings.Split(tmpl["OAUTH2_PROXY_EMAIL_DOMAINS"], ","), strings.Split(tmpl["OAUTH2_PROXY_ALLOWED_GROUPS"], ",")
		for _, v := range append(slices.Clone(domains), allowed...) {
			if v == "" || v != strings.TrimSpace(v) || v == "*" {
				t.Errorf("components/sso/secret.template.yaml: e-mail domains %q, allowed groups %q: no blanks, no \"*\"", domains, allowed)
			}
		}
		for _, g := range append(slices.Clone(cfg.OperatorGroups), cfg.ViewerGroups...) {
			if !slices.Contains(allowed, g) {
				t.Errorf("%s: group %s of WEBUI_OPERATOR_GROUPS/WEBUI_VIEWER_GROUPS is not in the template's OAUTH2_PROXY_ALLOWED_GROUPS %q: its members could never sign in", where, g, allowed)
			}
		}
	}
}

// production-sso against the running binaries: `worker webui` with the UI
// container's environment, and oauth2-proxy in front of it as its container
// runs it with the template's settings, signing in through a mock OpenID
// Connect provider (see startSSOProxy). The proxy's probes answer; an operator and a viewer of the overlay's groups sign in and read
// the console; the viewer's change is refused (403) and the operator's is
// not; a user of no allowed group, or of another e-mail domain, is refused
// at sign-in; the UI itself answers 401 to a request the proxy did not make.
func TestSSOOverlayAgainstRunningBinaries(t *testing.T) {
	t.Parallel()
	oauth2ProxyBin(t) // skip (or fail under CI) before starting anything
	provider, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = provider.Shutdown() })
	r := render(t, "production-sso")
	d, ui, proxy := webUIPod(t, r)
	uiBase := startSSOWebUI(t, r, d, ui)

	base := startSSOProxy(t, r, *proxy, provider, uiBase)
	for _, probe := range []*corev1.Probe{proxy.LivenessProbe, proxy.ReadinessProbe} {
		if code := ssoRequest(t, http.DefaultClient, "GET", base+probe.HTTPGet.Path); code != http.StatusOK {
			t.Errorf("probe %s answered %d", probe.HTTPGet.Path, code)
		}
	}
	signIn := func(email string, groups ...string) (*http.Client, int) {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		provider.QueueUser(&mockoidc.MockUser{Subject: email, Email: email, EmailVerified: true, Groups: groups})
		return c, ssoRequest(t, c, "GET", base+"/oauth2/start?rd=%2Foverview")
	}
	operator, code := signIn("alice@example.com", "stripe-webhooks-operators")
	if code != http.StatusOK {
		t.Fatalf("an operator signing in and opening /overview: %d", code)
	}
	viewer, code := signIn("bob@example.com", "stripe-webhooks-viewers")
	if code != http.StatusOK {
		t.Fatalf("a viewer signing in and opening /overview: %d", code)
	}
	if code := ssoRequest(t, viewer, "POST", base+"/retry_all_dead_jobs"); code != http.StatusForbidden {
		t.Errorf("a viewer's POST /retry_all_dead_jobs: %d, want 403", code)
	}
	if code := ssoRequest(t, operator, "POST", base+"/retry_all_dead_jobs"); code >= 400 {
		t.Errorf("an operator's POST /retry_all_dead_jobs: %d", code)
	}
	for _, u := range [][2]string{{"eve@example.com", "contractors"}, {"mallory@example.org", "stripe-webhooks-operators"}} {
		if _, code := signIn(u[0], u[1]); code != http.StatusForbidden {
			t.Errorf("%s of %s signing in: %d, want 403", u[0], u[1], code)
		}
	}
	if code := ssoRequest(t, http.DefaultClient, "GET", uiBase+"/overview"); code != http.StatusUnauthorized {
		t.Errorf("the UI itself, without the proxy: %d, want 401", code)
	}
}

// startSSOProxy runs oauth2-proxy as production-sso's proxy container runs
// it, in front of the UI at uiBase, signing in through provider, and
// returns its base URL. Its arguments and environment are the container's
// and the template's but for where it listens, the UI's port, the cookie's
// Secure flag (plain HTTP here), and the provider's issuer, client and
// redirect URL; its secrets are files laid out as the kubelet mounts them.
func startSSOProxy(t *testing.T, r *rendered, proxy corev1.Container, provider *mockoidc.MockOIDC, uiBase string) string {
	t.Helper()
	base := fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))
	flags := proxyFlags(t, "production-sso/"+proxy.Name, proxy.Args)
	flags["http-address"] = strings.TrimPrefix(base, "http://")
	flags["upstream"] = uiBase + "/"
	flags["cookie-secure"] = "false"
	var args []string
	for name, v := range flags {
		args = append(args, "--"+name+"="+v)
	}
	env := r.proxyEnviron(t, "production-sso/"+proxy.Name, proxy, map[string]string{
		"OAUTH2_PROXY_OIDC_ISSUER_URL": provider.Issuer(),
		"OAUTH2_PROXY_CLIENT_ID":       provider.ClientID,
		"OAUTH2_PROXY_REDIRECT_URL":    base + "/oauth2/callback",
	})
	cookieSecret := make([]byte, 32)
	_, _ = rand.Read(cookieSecret)
	// As the template says to make it: URL-safe base64, no padding, no newline.
	files := map[string]string{"OAUTH2_PROXY_CLIENT_SECRET": provider.ClientSecret,
		"OAUTH2_PROXY_COOKIE_SECRET": base64.RawURLEncoding.EncodeToString(cookieSecret)}
	dir := newSecretDir(t, files)
	for key := range files {
		if _, ok := env[key+"_FILE"]; !ok {
			t.Fatalf("production-sso: the proxy container has no %s_FILE", key)
		}
		env[key+"_FILE"] = dir.path(key)
	}
	p := testenv.StartProcess(t, oauth2ProxyBin(t), args, pairs(env), base, "/ping")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("oauth2-proxy output:\n%s", p.Logs.String())
		}
	})
	return base
}

// startSSOWebUI runs `worker webui` with the environment of production-sso's
// UI container, on this test's database and Redis namespace, and returns
// its base URL.
func startSSOWebUI(t *testing.T, r *rendered, d *appsv1.Deployment, ui corev1.Container) string {
	t.Helper()
	dbURL, ns := testenv.Database(t, ""), testenv.Namespace(t, "")
	host, redisPort := testenv.RedisHostPort(t, testenv.RedisAddr())
	env, _ := r.configEnviron(t, "production-sso/"+ui.Name, &d.Spec.Template.Spec, ui,
		map[string]string{"DATABASE_URL": dbURL, "REDIS_PASSWORD": ""})
	env["WEBUI_ADDR"] = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	env["REDIS_HOST"], env["REDIS_PORT"], env["WORK_NAMESPACE"] = host, strconv.Itoa(redisPort), ns
	p := testenv.StartProcess(t, filepath.Join(binDir, "worker"), []string{"webui"}, pairs(env), "http://"+env["WEBUI_ADDR"], "/healthz")
	return p.Base
}

// ssoRequest sends a request with c, following redirects, and returns the
// final answer's status.
func ssoRequest(t *testing.T, c *http.Client, method, u string) int {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// oauth2ProxyBin finds oauth2-proxy: $OAUTH2_PROXY, then PATH, then the
// workspace's .dev/bin, where `make oauth2-proxy` installs it. Missing, the
// test skips, or fails under CI.
func oauth2ProxyBin(t *testing.T) string {
	t.Helper()
	p := os.Getenv("OAUTH2_PROXY")
	if p == "" {
		var err error
		if p, err = exec.LookPath("oauth2-proxy"); err != nil {
			p = filepath.Join("..", ".dev", "bin", "oauth2-proxy")
		}
	}
	p, err := filepath.Abs(p)
	if err == nil {
		_, err = os.Stat(p)
	}
	if err != nil {
		err = fmt.Errorf("oauth2-proxy not in $OAUTH2_PROXY, PATH or ../.dev/bin (make oauth2-proxy installs it): %w", err)
	}
	testenv.RequireServer(t, "oauth2-proxy", err)
	return p
}
