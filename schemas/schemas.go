// Package schemas holds the database migrations of both store dialects so
// that the hub binary carries its schema with it and applies it on start.
package schemas

import "embed"

// Migrations holds migrations/sqlite and migrations/postgres, in goose's
// SQL format. Each dialect is a separate, independently numbered series.
//
//go:embed migrations
var Migrations embed.FS
