package server_test

import (
	"context"
	"database/sql"

	"github.com/airlock-dev/airlock/internal/server"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

type sqlDB = sql.DB

func openStoreOnly(dir string) (store.Store, error) {
	ws, err := workspace.Load(dir)
	if err != nil {
		return nil, err
	}
	return server.OpenStore(context.Background(), ws, "", "")
}
