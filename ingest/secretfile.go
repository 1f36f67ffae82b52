package main

import (
	"fmt"
	"log/slog"
	"strings"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/stripeevent"
)

// newSecretFile watches STRIPE_WEBHOOK_SECRET_FILE at path for a verifier
// that already has the secrets read from it at start (current), and gives
// the verifier the secrets it holds when they change. A file that cannot be
// read or holds no secret leaves the verifier with the secrets it has.
func newSecretFile(path string, current []string, v *stripeevent.Verifier, logger *slog.Logger) *fileWatcher {
	return &fileWatcher{what: "webhook secrets", entries: "secrets", path: path, logger: logger, poll: fileWatchPoll,
		current: strings.Join(current, ","), currentN: len(current),
		read: func() (string, int, error) {
			secrets, err := readSecrets(path)
			return strings.Join(secrets, ","), len(secrets), err
		},
		apply: func(value string) error { return v.SetSecrets(strings.Split(value, ",")) },
	}
}

// readSecrets returns the secrets in the file, as config reads them at
// start: separated by commas or line breaks, surrounding white space
// dropped.
func readSecrets(path string) ([]string, error) {
	v, err := config.ReadFileVar("STRIPE_WEBHOOK_SECRET", path)
	if err != nil {
		return nil, err
	}
	var secrets []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			secrets = append(secrets, s)
		}
	}
	if len(secrets) == 0 {
		return nil, fmt.Errorf("STRIPE_WEBHOOK_SECRET_FILE: %s holds no secret", path)
	}
	return secrets, nil
}
