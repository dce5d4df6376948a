// Package schemas holds the database migrations of both store dialects so
// that the hub binary carries its schema with it and applies it on start.
package schemas

import "embed"

// Migrations holds migrations/sqlite and migrations/postgres, in goose's
// SQL format. Each dialect is a separate, independently numbered series.
//
//go:embed migrations
var Migrations embed.FS

// Sample holds the fictional directory extracts `eimis-hub sample` (and so
// `make run`) loads: the previous month's extract, then the current one,
// which no longer lists two practitioners — they become inactive exactly
// as they would in production.
//
//go:embed sample/PS_LibreAcces_Personne_activite_sample_previous.txt sample/PS_LibreAcces_Personne_activite_sample.txt
var Sample embed.FS

// Sample extract paths inside Sample, oldest first.
const (
	SamplePrevious = "sample/PS_LibreAcces_Personne_activite_sample_previous.txt"
	SampleCurrent  = "sample/PS_LibreAcces_Personne_activite_sample.txt"
)
