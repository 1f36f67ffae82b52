package ssotest

import (
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// identityHeaders are the request headers an upstream of oauth2-proxy could
// take an identity from, by their names normalised as oauth2-proxy compares
// them (lower case, "_" as "-").
var identityHeaders = []string{
	"x-forwarded-email", "x-forwarded-groups", "x-forwarded-user", "x-forwarded-preferred-username",
	"x-auth-request-email", "x-auth-request-groups", "x-auth-request-user",
}

// echo is an upstream that answers each request with the identity headers
// it received, every value of every spelling, by normalised name.
type echo struct {
	URL  string
	hits atomic.Int64
}

func startEcho(t *testing.T) *echo {
	t.Helper()
	e := &echo{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		seen := map[string][]string{}
		for name, values := range r.Header {
			n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
			if slices.Contains(identityHeaders, n) {
				seen[n] = append(seen[n], values...)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen)
	}))
	t.Cleanup(srv.Close)
	e.URL = srv.URL
	return e
}

// get sends GET path through the proxy with extra headers (a name given
// as written, so that "X_Forwarded_Email" is sent as such) and returns what
// the upstream saw and the answer's headers.
func get(t *testing.T, c *http.Client, s *SSO, path string, headers map[string][]string) (map[string][]string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, values := range headers {
		req.Header[name] = values
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != s.URL+path {
		t.Fatalf("GET %s ended on %s with %d", path, resp.Request.URL, resp.StatusCode)
	}
	seen := map[string][]string{}
	if err := json.NewDecoder(resp.Body).Decode(&seen); err != nil {
		t.Fatal(err)
	}
	return seen, resp.Header
}

// A request without a session never reaches the upstream, whatever identity
// headers it carries: a browser is sent straight to the provider (no
// sign-in button), a script (Accept: application/json) gets 401.
func TestUnauthenticatedRequestsAreSentToSignIn(t *testing.T) {
	t.Parallel()
	up := startEcho(t)
	s := Start(t, up.URL)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, accept := range []string{"text/html", "application/json"} {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/dead_jobs", nil)
		req.Header.Set("Accept", accept)
		req.Header.Set("X-Forwarded-Email", "alice@example.com")
		req.Header.Set("X-Forwarded-Groups", "ops-operators")
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch loc := resp.Header.Get("Location"); accept {
		case "text/html":
			if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, s.Issuer+"/authorize?") {
				t.Errorf("a browser without a session: %d to %q, want 302 to %s/authorize", resp.StatusCode, loc, s.Issuer)
			}
		default:
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("a script without a session: %d, want 401", resp.StatusCode)
			}
		}
	}
	if n := up.hits.Load(); n != 0 {
		t.Errorf("the upstream was reached %d times without a session", n)
	}
}

// Each signed-in client reaches the upstream as its own user: the e-mail
// and the groups claim (comma-separated) in X-Forwarded-Email and
// X-Forwarded-Groups, one value each; X-Auth-Request-* are set on the
// answer to the client, not on the request to the upstream.
func TestSignedInUsersReachTheUpstreamAsThemselves(t *testing.T) {
	t.Parallel()
	up := startEcho(t)
	s := Start(t, up.URL)
	for _, u := range []struct {
		email  string
		groups []string
	}{
		{"alice@example.com", []string{"ops-operators"}},
		{"bob@example.com", []string{"ops-viewers"}},
		{"carol@example.com", []string{"ops-operators", "ops-viewers"}},
	} {
		c := s.Client(t, u.email, u.groups...)
		seen, answer := get(t, c, s, "/queues", nil)
		name, _, _ := strings.Cut(u.email, "@")
		want := map[string][]string{
			"x-forwarded-email":              {u.email},
			"x-forwarded-groups":             {strings.Join(u.groups, ",")},
			"x-forwarded-user":               {"sub-" + u.email},
			"x-forwarded-preferred-username": {name},
		}
		if diff := cmp.Diff(want, seen); diff != "" {
			t.Errorf("%s: the upstream's identity headers (-want +got):\n%s", u.email, diff)
		}
		if got := answer.Get("X-Auth-Request-Email"); got != u.email {
			t.Errorf("%s: X-Auth-Request-Email on the answer %q", u.email, got)
		}
	}
}

// An attacker signed in as bob, a viewer, cannot pass for alice or for an
// operator: every identity header the proxy sets is removed from the
// client's request first, in any spelling (repeated, lower case, with
// underscores), and replaced by bob's own; a user without groups reaches
// the upstream with no groups header at all.
func TestClientIdentityHeadersAreReplaced(t *testing.T) {
	t.Parallel()
	up := startEcho(t)
	s := Start(t, up.URL)
	forged := map[string][]string{
		"X-Forwarded-Email":  {"alice@example.com", "root@example.com"},
		"x-forwarded-groups": {"ops-operators"},
		"X_Forwarded_Email":  {"alice@example.com"},
		"X_Forwarded_Groups": {"ops-operators"},
		"X-Forwarded-User":   {"alice"},
	}
	bob := s.Client(t, "bob@example.com", "ops-viewers")
	seen, _ := get(t, bob, s, "/dead_jobs", forged)
	want := map[string][]string{
		"x-forwarded-email":              {"bob@example.com"},
		"x-forwarded-groups":             {"ops-viewers"},
		"x-forwarded-user":               {"sub-bob@example.com"},
		"x-forwarded-preferred-username": {"bob"},
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("bob with forged headers, at the upstream (-want +got):\n%s", diff)
	}

	dave := s.Client(t, "dave@example.com")
	seen, _ = get(t, dave, s, "/dead_jobs", forged)
	if g, ok := seen["x-forwarded-groups"]; ok || !slices.Equal(seen["x-forwarded-email"], []string{"dave@example.com"}) {
		t.Errorf("dave, in no group, with forged headers: the upstream saw %s and groups %q (present: %v)", seen["x-forwarded-email"], g, ok)
	}
}

// X-Auth-Request-* are response headers of oauth2-proxy (for an ingress's
// auth_request): as a reverse proxy it neither sets nor removes them on
// the request, so a signed-in client's own reach the upstream untouched.
// An upstream behind oauth2-proxy as a reverse proxy must read
// X-Forwarded-Email and X-Forwarded-Groups (WEBUI_PROXY_USER_HEADER's and
// WEBUI_PROXY_GROUPS_HEADER's defaults), never X-Auth-Request-*.
func TestClientXAuthRequestHeadersReachTheUpstream(t *testing.T) {
	t.Parallel()
	up := startEcho(t)
	s := Start(t, up.URL)
	bob := s.Client(t, "bob@example.com", "ops-viewers")
	seen, _ := get(t, bob, s, "/", map[string][]string{
		"X-Auth-Request-Email":  {"alice@example.com"},
		"X-Auth-Request-Groups": {"ops-operators"},
	})
	if got := seen["x-auth-request-email"]; !slices.Equal(got, []string{"alice@example.com"}) {
		t.Errorf("X-Auth-Request-Email at the upstream %q: oauth2-proxy now sets or strips it; revisit the runbook", got)
	}
	if got := seen["x-forwarded-email"]; !slices.Equal(got, []string{"bob@example.com"}) {
		t.Errorf("X-Forwarded-Email at the upstream %q, want bob's", got)
	}
}

// With --allowed-group, a user in none of them is refused after signing in
// (403) and never reaches the upstream; a member of one gets through.
func TestAllowedGroupsKeepOthersOut(t *testing.T) {
	t.Parallel()
	up := startEcho(t)
	s := Start(t, up.URL, "--allowed-group=ops-operators", "--allowed-group=ops-viewers")
	bob := s.Client(t, "bob@example.com", "ops-viewers")
	if seen, _ := get(t, bob, s, "/", nil); !slices.Equal(seen["x-forwarded-email"], []string{"bob@example.com"}) {
		t.Errorf("a viewer: the upstream saw %q", seen["x-forwarded-email"])
	}
	hits := up.hits.Load()

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	eve := &http.Client{Jar: jar}
	s.SignInAs("eve@example.com", "contractors")
	resp, err := eve.Get(s.URL + "/oauth2/start?rd=%2Fqueues")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("eve, in no allowed group, signing in: %d at %s, want 403", resp.StatusCode, resp.Request.URL)
	}
	resp, err = eve.Get(s.URL + "/oauth2/userinfo")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("eve has a session after a refused sign-in: /oauth2/userinfo answered %d", resp.StatusCode)
	}
	if n := up.hits.Load(); n != hits {
		t.Errorf("the upstream was reached by eve")
	}
}
