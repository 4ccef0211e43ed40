package server_test

import "database/sql"

type sqlDB = sql.DB
