package access

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"

	"stripe-webhooks/pkg/config"
)

// Role is what a user may do.
type Role string

// The roles.
const (
	// Viewer sees every page and changes nothing.
	Viewer Role = "viewer"
	// Operator also replays events and retries or deletes jobs.
	Operator Role = "operator"
)

// LocalUser is who uses a web UI without login (WEBUI_AUTH=none).
const LocalUser = "local"

// Identity is who sent a request, and in which role.
type Identity struct {
	User string
	Role Role
}

// MayChange reports whether id may make changes.
func (id Identity) MayChange() bool { return id.Role == Operator }

type identityKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext is the identity Authenticator.Middleware put in ctx.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// Authenticator identifies the web UI's users, as config.WebUI says.
type Authenticator struct {
	mode                     string
	userHash, passHash       [32]byte
	proxies                  []netip.Prefix
	userHeader, groupsHeader string
	operators, viewers       map[string]bool
	logger                   *slog.Logger
}

// New returns the Authenticator of cfg (checked by config.LoadWebUI).
func New(cfg config.WebUI, logger *slog.Logger) (*Authenticator, error) {
	a := &Authenticator{mode: cfg.Auth, logger: logger,
		userHeader: cfg.ProxyUserHeader, groupsHeader: cfg.ProxyGroupsHeader,
		operators: set(cfg.OperatorGroups), viewers: set(cfg.ViewerGroups)}
	switch cfg.Auth {
	case config.WebUIAuthBasic:
		if cfg.LoginUser == "" || cfg.LoginPassword == "" {
			return nil, fmt.Errorf("access: basic auth without a user and password")
		}
		a.userHash, a.passHash = sha256.Sum256([]byte(cfg.LoginUser)), sha256.Sum256([]byte(cfg.LoginPassword))
	case config.WebUIAuthProxy:
		a.proxies = cfg.TrustedPrefixes()
		if len(a.proxies) == 0 || len(a.operators) == 0 {
			return nil, fmt.Errorf("access: proxy auth without trusted proxies or operator groups")
		}
	case config.WebUIAuthNone:
	default:
		return nil, fmt.Errorf("access: unknown auth mode %q", cfg.Auth)
	}
	return a, nil
}

func set(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}

// Mode is basic, proxy or none.
func (a *Authenticator) Mode() string { return a.mode }

// Middleware serves next the requests whose sender it identifies, with
// their Identity in the request's context; others get 401 (no identity)
// or 403 (identified, but in no group that may use the UI).
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, status, reason := a.identify(r)
		if status != 0 {
			a.refuse(w, r, status, reason)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	})
}

func (a *Authenticator) refuse(w http.ResponseWriter, r *http.Request, status int, reason string) {
	level := slog.LevelInfo
	if a.mode == config.WebUIAuthProxy {
		level = slog.LevelWarn // the proxy should have sent none of these
	}
	a.logger.Log(r.Context(), level, "web UI request refused", "status", status, "reason", reason,
		"remote_addr", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
	if status == http.StatusUnauthorized && a.mode == config.WebUIAuthBasic {
		w.Header().Set("WWW-Authenticate", `Basic realm="stripe-webhooks jobs", charset="UTF-8"`)
	}
	msg := "authentication required"
	if status == http.StatusForbidden {
		msg = "forbidden: you are in none of the web UI's groups"
	}
	http.Error(w, msg, status)
}

// identify returns r's identity, or the status to refuse it with and why.
func (a *Authenticator) identify(r *http.Request) (Identity, int, string) {
	switch a.mode {
	case config.WebUIAuthBasic:
		return a.basic(r)
	case config.WebUIAuthProxy:
		return a.proxy(r)
	default:
		if !peerIn(r, nil) {
			return Identity{}, http.StatusUnauthorized, "no login, and the request is not from this machine"
		}
		return Identity{User: LocalUser, Role: Operator}, 0, ""
	}
}

// basic checks the login in constant time; its one user is an operator.
func (a *Authenticator) basic(r *http.Request) (Identity, int, string) {
	u, p, ok := r.BasicAuth()
	gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
	userOK := subtle.ConstantTimeCompare(gotUser[:], a.userHash[:])
	passOK := subtle.ConstantTimeCompare(gotPass[:], a.passHash[:])
	if !ok || userOK&passOK != 1 {
		return Identity{}, http.StatusUnauthorized, "no or wrong basic auth login"
	}
	return Identity{User: u, Role: Operator}, 0, ""
}

// proxy believes the identity headers of a request only when its TCP peer
// is a trusted proxy (never X-Forwarded-For, which anyone can send).
func (a *Authenticator) proxy(r *http.Request) (Identity, int, string) {
	if !peerIn(r, a.proxies) {
		return Identity{}, http.StatusUnauthorized, "not from a trusted proxy"
	}
	users := r.Header.Values(a.userHeader)
	if len(users) > 1 {
		// A proxy that appends rather than replaces would pass the client's too.
		return Identity{}, http.StatusUnauthorized, "several " + a.userHeader + " headers from the proxy"
	}
	user := ""
	if len(users) == 1 {
		user = strings.TrimSpace(users[0])
	}
	if user == "" {
		return Identity{}, http.StatusUnauthorized, "no " + a.userHeader + " header from the proxy"
	}
	role, ok := a.role(groups(r.Header.Values(a.groupsHeader)))
	if !ok {
		return Identity{User: user}, http.StatusForbidden, "in none of the operator or viewer groups"
	}
	return Identity{User: user, Role: role}, 0, ""
}

// role is the role of a member of groups: operator if one of them is an
// operator group, else viewer if there are no viewer groups or one of
// them is.
func (a *Authenticator) role(groups []string) (Role, bool) {
	viewer := len(a.viewers) == 0
	for _, g := range groups {
		if a.operators[g] {
			return Operator, true
		}
		viewer = viewer || a.viewers[g]
	}
	return Viewer, viewer
}

// groups splits header values of comma-separated groups.
func groups(values []string) []string {
	var out []string
	for _, v := range values {
		for g := range strings.SplitSeq(v, ",") {
			if g = strings.TrimSpace(g); g != "" {
				out = append(out, g)
			}
		}
	}
	return out
}

// peerIn reports whether r's TCP peer (RemoteAddr, as net/http set it) is
// in one of prefixes, or on loopback when prefixes is nil.
func peerIn(r *http.Request, prefixes []netip.Prefix) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	if prefixes == nil {
		return ip.IsLoopback()
	}
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
