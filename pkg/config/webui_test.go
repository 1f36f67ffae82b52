package config

import "testing"

func TestWebUIBeyondLoopbackNeedsLogin(t *testing.T) {
	t.Parallel()
	for _, environ := range [][]string{
		{"WEBUI_ADDR=localhost:5040"},
		{"WEBUI_ADDR=[::1]:5040"},
		{"WEBUI_ADDR=0.0.0.0:5040", "WEBUI_USERNAME=ops", "WEBUI_PASSWORD=s3cret"},
	} {
		if err := webui(environ); err != nil {
			t.Errorf("%v: %v", environ, err)
		}
	}
}
