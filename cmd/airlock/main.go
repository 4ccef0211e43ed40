// Airlock is a self-hosted server for privacy-preserving data sharing: it
// answers partners' SQL over sensitive data only in the shapes policies and
// agreements allow, and records every decision in a verifiable audit log.
package main

import (
	"os"

	"github.com/airlock-dev/airlock/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
