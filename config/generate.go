package config

// docs/configuration.md is generated from this package's doc comments
// and example.yaml.
//go:generate go run ./internal/gendoc -out ../docs/configuration.md
