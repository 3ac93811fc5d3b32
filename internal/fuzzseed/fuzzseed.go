// Package fuzzseed gives fuzz targets their seeds from the tests
// themselves, so that the seeds follow the tests as they change.
package fuzzseed

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// Literals returns, sorted and without repeats, the string literals in
// the Go files matching pattern that keep accepts (all of them when
// keep is nil). It fails tb when no file matches or one does not parse.
func Literals(tb testing.TB, pattern string, keep func(string) bool) []string {
	tb.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		tb.Fatalf("no files match %s (%v)", pattern, err)
	}
	seen := map[string]bool{}
	fset := token.NewFileSet()
	for _, name := range files {
		file, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			tb.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && (keep == nil || keep(s)) {
					seen[s] = true
				}
			}
			return true
		})
	}
	return slices.Sorted(maps.Keys(seen))
}
