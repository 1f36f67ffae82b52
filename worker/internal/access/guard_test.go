package access

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// A viewer's request of any method but GET and HEAD is 403, known method
// or not, before it reaches the handler; an operator's goes through, and
// so does a viewer's read.
func TestGuardRefusesViewersChangesByMethod(t *testing.T) {
	t.Parallel()
	reached := 0
	h := Guard(slog.New(slog.DiscardHandler), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++ }))
	serve := func(id *Identity, method string) int {
		req := httptest.NewRequest(method, "/anything", nil)
		if id != nil {
			req = req.WithContext(WithIdentity(req.Context(), *id))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	viewer := &Identity{User: "bo@example.com", Role: Viewer}
	operator := &Identity{User: "ana@example.com", Role: Operator}
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PURGE", "get"} {
		if code := serve(viewer, m); code != http.StatusForbidden {
			t.Errorf("viewer %s: %d, want 403", m, code)
		}
		if code := serve(nil, m); code != http.StatusForbidden {
			t.Errorf("no identity %s: %d, want 403", m, code)
		}
	}
	if reached != 0 {
		t.Fatalf("refused requests reached the handler %d times", reached)
	}
	for _, m := range []string{"GET", "HEAD"} {
		if code := serve(viewer, m); code != http.StatusOK {
			t.Errorf("viewer %s: %d, want 200", m, code)
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "PURGE"} {
		if code := serve(operator, m); code != http.StatusOK {
			t.Errorf("operator %s: %d, want 200", m, code)
		}
	}
	if reached != 6 {
		t.Errorf("allowed requests reached the handler %d times, want 6", reached)
	}
}
