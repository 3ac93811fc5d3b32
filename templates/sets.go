package templates

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// DefaultName is the name of the set used when no set matches an
// email's report type.
const DefaultName = "default"

//go:embed */*.tmpl
var embedded embed.FS

// Sets is the default template set and one set per report type. It is
// safe for concurrent use.
type Sets struct {
	def   *Set
	types map[string]*Set
}

// For returns the set for reportType, or the default set when there is
// none (or reportType is "").
func (s *Sets) For(reportType string) *Set {
	if set, ok := s.types[reportType]; ok {
		return set
	}
	return s.def
}

// Types lists the report types that have a set of their own, sorted.
func (s *Sets) Types() []string {
	var out []string
	for t := range s.types {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// DefaultSets returns the embedded sets: default/ and one per report
// type directory beside it.
func DefaultSets() *Sets {
	s, err := defaultSets()
	if err != nil {
		panic("templates: embedded templates do not load: " + err.Error())
	}
	return s
}

var defaultSets = sync.OnceValues(func() (*Sets, error) { return LoadSets("") })

// LoadSets loads the embedded sets and, when dir is not "", overrides
// them file by file from dir:
//
//	dir/email.html.tmpl           overrides default/email.html.tmpl, for every set
//	dir/finance/subject.txt.tmpl  overrides the subject of report type "finance",
//	                              or makes a set for it when none is embedded
//
// A set's file is the first that exists of: dir/TYPE/FILE, dir/FILE,
// the embedded TYPE/FILE, the embedded default/FILE. So a file in dir
// always wins over an embedded one, and within each a type's own file
// wins over the default's. Report types are matched exactly, case
// included.
//
// Mistakes in dir are errors, all reported together: a missing dir, a
// *.tmpl file whose name is not one of [Files], a type directory that
// holds none of them, a nested directory, a directory named "default"
// (put default overrides at the top of dir), and any template that
// does not parse or fails to render the [Samples]. Entries whose names
// start with "." and files not ending in .tmpl are ignored.
func LoadSets(dir string) (*Sets, error) {
	emb, err := readLayer(embedded, func(rel string) string { return "embedded " + rel })
	if err != nil {
		return nil, err
	}
	var over map[string]map[string]source
	if dir != "" {
		st, err := os.Stat(dir)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("%s: not a directory", dir)
		}
		over, err = readDirLayer(os.DirFS(dir), func(rel string) string { return filepath.Join(dir, filepath.FromSlash(rel)) })
		if err != nil {
			return nil, err
		}
	}

	names := map[string]bool{}
	for n := range emb {
		names[n] = true
	}
	for n := range over {
		names[n] = true
	}
	s := &Sets{types: map[string]*Set{}}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(names)) {
		src := map[string]source{}
		for _, f := range Files {
			for _, l := range []map[string]source{over[name], over[DefaultName], emb[name], emb[DefaultName]} {
				if v, ok := l[f]; ok {
					src[f] = v
					break
				}
			}
		}
		set, err := parseSet(name, src)
		if err != nil {
			// A broken file shared by several sets is reported once.
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				if !slices.ContainsFunc(errs, func(x error) bool { return x.Error() == e.Error() }) {
					errs = append(errs, e)
				}
			}
			continue
		}
		if name == DefaultName {
			s.def = set
		} else {
			s.types[name] = set
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// readLayer reads the embedded layout: one directory per set.
func readLayer(fsys fs.FS, label func(string) string) (map[string]map[string]source, error) {
	out := map[string]map[string]source{}
	dirs, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		files, err := fs.ReadDir(fsys, d.Name())
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			rel := path.Join(d.Name(), f.Name())
			if !slices.Contains(Files, f.Name()) {
				return nil, fmt.Errorf("%s: not a template name: want %s", label(rel), strings.Join(Files, ", "))
			}
			b, err := fs.ReadFile(fsys, rel)
			if err != nil {
				return nil, err
			}
			if out[d.Name()] == nil {
				out[d.Name()] = map[string]source{}
			}
			out[d.Name()][f.Name()] = source{text: string(b), from: label(rel)}
		}
	}
	if out[DefaultName] == nil {
		return nil, errors.New("no default set")
	}
	return out, nil
}

// readDirLayer reads a templates_dir: default overrides at the top, one
// directory per report type.
func readDirLayer(fsys fs.FS, label func(string) string) (map[string]map[string]source, error) {
	out := map[string]map[string]source{}
	var errs []error
	bad := func(rel, reason string) { errs = append(errs, fmt.Errorf("%s: %s", label(rel), reason)) }
	// readFiles reads the template files of one directory into set.
	readFiles := func(rel, set string, subdirs func(name string)) {
		entries, err := fs.ReadDir(fsys, rel)
		if err != nil {
			errs = append(errs, err)
			return
		}
		for _, e := range entries {
			name, p := e.Name(), path.Join(rel, e.Name())
			if strings.HasPrefix(name, ".") {
				continue
			}
			info, err := fs.Stat(fsys, p) // follows symlinks
			if err != nil {
				errs = append(errs, err)
				continue
			}
			switch {
			case info.IsDir() && subdirs != nil:
				subdirs(name)
			case info.IsDir():
				bad(p, "nested directories are not read; a report type's templates go directly in its directory")
			case slices.Contains(Files, name):
				b, err := fs.ReadFile(fsys, p)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if out[set] == nil {
					out[set] = map[string]source{}
				}
				out[set][name] = source{text: string(b), from: label(p)}
			case strings.HasSuffix(name, ".tmpl"):
				bad(p, "not a template name: want "+strings.Join(Files, ", "))
			}
		}
	}
	readFiles(".", DefaultName, func(name string) {
		if name == DefaultName {
			bad(name, "put overrides of the default templates at the top of templates_dir, not in default/")
			return
		}
		readFiles(name, name, nil)
		if out[name] == nil {
			bad(name, "holds none of "+strings.Join(Files, ", "))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}
