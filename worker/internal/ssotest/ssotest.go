// Package ssotest signs tests in through single sign-on as the deployment
// does it: a mock OpenID Connect provider (github.com/oauth2-proxy/mockoidc)
// in the test process, and the real oauth2-proxy binary in front of an
// upstream the test names, so that an http.Client with a cookie jar, or a
// real browser, signs in as any user with any groups. It is for tests only.
//
// The proxy runs with the flags of the deploy's sso component that matter
// to the upstream: provider oidc with the groups scope and claim, the
// identity passed as X-Forwarded-Email and X-Forwarded-Groups (and
// X-Forwarded-User, X-Forwarded-Preferred-Username) with any such header
// of the client's removed first, X-Auth-Request-* set on responses, any
// e-mail domain, and the provider's page opened at once (no sign-in
// button). Only the cookie is insecure (plain HTTP on loopback).
//
// The binary comes from $OAUTH2_PROXY, then PATH, then .dev/bin of the
// workspace (`make oauth2-proxy` installs it there). Without it the tests
// that need it skip, except under CI (CI set), where they fail.
package ssotest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"go/build"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/oauth2-proxy/mockoidc"

	"stripe-webhooks/pkg/testenv"
)

// SSO is a mock OIDC provider and an oauth2-proxy signing in through it.
type SSO struct {
	// URL is the proxy's base URL, http://127.0.0.1:port: every path but
	// /oauth2/* and /ping goes to the upstream once signed in.
	URL string
	// Issuer is the provider's issuer URL.
	Issuer string

	provider *mockoidc.MockOIDC
	proxy    *testenv.Process
	// signIn makes Login's queue-then-sign-in one step: the provider
	// hands the queued users out in order, to whoever comes next.
	signIn sync.Mutex
}

// Start runs a mock provider and oauth2-proxy in front of upstream (a base
// URL such as http://127.0.0.1:5040) until the test ends. args are further
// oauth2-proxy flags, such as --allowed-group=ops-operators.
func Start(t testing.TB, upstream string, args ...string) *SSO {
	t.Helper()
	bin, err := Binary()
	testenv.RequireServer(t, "oauth2-proxy", err)
	provider, err := mockoidc.Run()
	if err != nil {
		t.Fatalf("ssotest: start the mock OIDC provider: %v", err)
	}
	t.Cleanup(func() { _ = provider.Shutdown() })

	dir := t.TempDir()
	clientSecret := writeFile(t, dir, "client-secret", provider.ClientSecret)
	cookieSecret := writeFile(t, dir, "cookie-secret", randomSecret(t))
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	base := "http://" + addr
	flags := append([]string{
		"--http-address=" + addr,
		"--upstream=" + upstream,
		"--redirect-url=" + base + "/oauth2/callback",
		"--provider=oidc",
		"--oidc-issuer-url=" + provider.Issuer(),
		"--client-id=" + provider.ClientID,
		"--client-secret-file=" + clientSecret,
		"--code-challenge-method=S256",
		"--scope=openid email profile groups",
		"--oidc-groups-claim=groups",
		"--email-domain=*",
		"--cookie-secret-file=" + cookieSecret,
		"--cookie-secure=false",
		"--skip-provider-button=true",
		"--pass-user-headers=true",
		"--pass-basic-auth=false",
		"--skip-auth-strip-headers=true",
		"--set-xauthrequest=true",
	}, args...)
	// An empty environment (not nil, which would inherit this process's):
	// no OAUTH2_PROXY_* variable of the caller's changes the flags above.
	proxy := testenv.StartProcess(t, bin, flags, []string{}, base, "/ping")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("oauth2-proxy output:\n%s", proxy.Logs.String())
		}
	})
	return &SSO{URL: base, Issuer: provider.Issuer(), provider: provider, proxy: proxy}
}

// SignInAs queues a user for the provider: the next sign-in through it,
// a browser's or a client's, is this user, with a verified e-mail and
// these groups in the groups claim. Sign-ins take queued users in order;
// with none queued the provider answers with its default user.
func (s *SSO) SignInAs(email string, groups ...string) {
	name, _, _ := strings.Cut(email, "@")
	s.provider.QueueUser(&mockoidc.MockUser{
		Subject:           "sub-" + email,
		Email:             email,
		EmailVerified:     true,
		PreferredUsername: name,
		Groups:            slices.Clone(groups),
	})
}

// Client is a new http.Client with a cookie jar, signed in as email with
// groups. It follows redirects, as a browser does.
func (s *SSO) Client(t testing.TB, email string, groups ...string) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar}
	s.Login(t, c, email, groups...)
	return c
}

// UserInfo is what the proxy knows of a signed-in user (/oauth2/userinfo).
type UserInfo struct {
	User              string   `json:"user"`
	Email             string   `json:"email"`
	Groups            []string `json:"groups"`
	PreferredUsername string   `json:"preferredUsername"`
}

// Login signs c (which needs a cookie jar) in as email with groups: the
// whole code flow through the proxy and the provider, as a browser makes
// it, ending on the proxy's /oauth2/userinfo, which must name that user.
func (s *SSO) Login(t testing.TB, c *http.Client, email string, groups ...string) {
	t.Helper()
	if c.Jar == nil {
		t.Fatal("ssotest: Login needs a client with a cookie jar")
	}
	s.signIn.Lock()
	defer s.signIn.Unlock()
	s.SignInAs(email, groups...)
	resp, err := c.Get(s.URL + "/oauth2/start?rd=" + url.QueryEscape("/oauth2/userinfo"))
	if err != nil {
		t.Fatalf("ssotest: sign in as %s: %v", email, err)
	}
	defer resp.Body.Close()
	var info UserInfo
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/oauth2/userinfo" {
		t.Fatalf("ssotest: sign in as %s ended on %s with %d", email, resp.Request.URL, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatalf("ssotest: sign in as %s: userinfo: %v", email, err)
	}
	if info.Email != email || !slices.Equal(info.Groups, groups) {
		t.Fatalf("ssotest: signed in as %s %v, but the proxy has %s %v", email, groups, info.Email, info.Groups)
	}
}

// Binary finds oauth2-proxy: $OAUTH2_PROXY, then PATH, then .dev/bin of the
// workspace, then $GOPATH/bin.
func Binary() (string, error) {
	if p := os.Getenv("OAUTH2_PROXY"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("OAUTH2_PROXY=%s: %w", p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("oauth2-proxy"); err == nil {
		return p, nil
	}
	var candidates []string
	if dir, err := os.Getwd(); err == nil {
		for ; dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
				candidates = append(candidates, filepath.Join(dir, ".dev", "bin", "oauth2-proxy"))
				break
			}
		}
	}
	for _, gopath := range filepath.SplitList(build.Default.GOPATH) {
		candidates = append(candidates, filepath.Join(gopath, "bin", "oauth2-proxy"))
	}
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("oauth2-proxy not in $OAUTH2_PROXY, PATH or %s (make oauth2-proxy installs it)", strings.Join(candidates, ", "))
}

// randomSecret is a cookie secret as oauth2-proxy wants one: 32 random
// bytes, base64.
func randomSecret(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.URLEncoding.EncodeToString(b)
}

// writeFile writes a secret the proxy reads from a file, as the deploy
// mounts them, and returns its path.
func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
