package access

import (
	"log/slog"
	"net/http"
)

// Reads reports whether method only reads: GET and HEAD. Every other
// method, known or not, counts as a change.
func Reads(method string) bool {
	return method == http.MethodGet || method == http.MethodHead
}

// Guard answers 403 to a request that is a change (Reads is false) from
// an identity that may not change things, or from none, and serves next
// the others. It runs behind Authenticator.Middleware.
func Guard(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if Reads(r.Method) {
			next.ServeHTTP(w, r)
			return
		}
		id, ok := FromContext(r.Context())
		if !ok || !id.MayChange() {
			logger.Warn("web UI change refused", "user", id.User, "role", string(id.Role), "method", r.Method, "path", r.URL.Path)
			http.Error(w, "forbidden: viewers cannot change anything; ask an operator", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
