package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// server is what the measures depend on in the Postgres server.
type server struct {
	version      string
	lz4          bool   // the server was built with lz4
	defaultTOAST string // default_toast_compression
	checksums    string // data_checksums
}

func (s server) String() string {
	return fmt.Sprintf("Postgres %s, lz4 %v, default_toast_compression %s, data_checksums %s",
		s.version, s.lz4, s.defaultTOAST, s.checksums)
}

func inspectServer(ctx context.Context, serverURL string) (server, error) {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return server{}, err
	}
	defer conn.Close(context.Background())
	var s server
	err = conn.QueryRow(ctx, `SELECT current_setting('server_version'),
			'lz4' = ANY (enumvals), setting, current_setting('data_checksums')
		FROM pg_settings WHERE name = 'default_toast_compression'`).Scan(&s.version, &s.lz4, &s.defaultTOAST, &s.checksums)
	return s, err
}
