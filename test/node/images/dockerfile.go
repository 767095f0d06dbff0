package images

import (
	"bufio"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// ParseDockerfile reads the Dockerfile's image stages into Stages (the
// build stage, which only runs `make build`, is skipped): FROM ... AS,
// COPY --from=build, USER, ENTRYPOINT, CMD, and from RUN lines the
// packages of `apt-get install` and the commands run with --version. It
// knows only what this project's Dockerfile uses and fails on anything
// else, so a new instruction cannot slip past the drift test.
func ParseDockerfile(text string) ([]Stage, error) {
	var stages []Stage
	var cur *Stage
	for _, ins := range logicalLines(text) {
		kw, rest, _ := strings.Cut(ins, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(kw) {
		case "FROM":
			f := strings.Fields(rest)
			st := Stage{Base: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.Target = f[2]
			}
			stages = append(stages, st)
			cur = &stages[len(stages)-1]
		case "COPY":
			f := strings.Fields(rest)
			if len(f) == 3 && f[0] == "--from=build" {
				if cur.Binaries == nil {
					cur.Binaries = map[string]string{}
				}
				cur.Binaries[f[2]] = strings.TrimPrefix(f[1], "/src/")
			} else if cur.Target != "build" {
				return nil, fmt.Errorf("Dockerfile: COPY the builder does not know: %s", ins)
			}
		case "USER":
			cur.User = rest
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(rest), &v); err != nil {
				return nil, fmt.Errorf("Dockerfile: %s must be an exec-form JSON array: %s", kw, rest)
			}
			if strings.ToUpper(kw) == "CMD" {
				cur.Cmd = v
			} else {
				cur.Entrypoint = v
			}
		case "RUN":
			cur.AptPackages = append(cur.AptPackages, aptPackages(rest)...)
			cur.VersionChecks = append(cur.VersionChecks, versionChecks(rest)...)
		case "WORKDIR", "ARG", "ENV":
			if cur != nil && cur.Target != "build" {
				return nil, fmt.Errorf("Dockerfile: %s in the %s stage is not reproduced by test/node/images", kw, cur.Target)
			}
		default:
			return nil, fmt.Errorf("Dockerfile: instruction the builder does not know: %s", ins)
		}
	}
	out := stages[:0]
	for _, s := range stages {
		if s.Target != "build" {
			out = append(out, s)
		}
	}
	return out, nil
}

// logicalLines joins continuation lines and drops comments, blanks and the
// syntax directive.
func logicalLines(text string) []string {
	var out []string
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || (l == "" && b.Len() == 0) {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			b.WriteString(strings.TrimSuffix(l, "\\") + " ")
			continue
		}
		b.WriteString(l)
		out = append(out, strings.Join(strings.Fields(b.String()), " "))
		b.Reset()
	}
	return out
}

var versionRE = regexp.MustCompile(`([A-Za-z0-9_.-]+) --version`)

func versionChecks(run string) []string {
	var out []string
	for _, m := range versionRE.FindAllStringSubmatch(run, -1) {
		out = append(out, m[1])
	}
	return out
}

func aptPackages(run string) []string {
	var out []string
	for _, cmd := range strings.Split(run, "&&") {
		f := strings.Fields(cmd)
		i := slices.Index(f, "install")
		if i < 0 || !slices.Contains(f[:i], "apt-get") {
			continue
		}
		for _, a := range f[i+1:] {
			if !strings.HasPrefix(a, "-") {
				out = append(out, a)
			}
		}
	}
	return out
}

// ParseMakeBuild reads the Makefile's build target: `-o $(BIN)/<name>
// <package>` lines, with BIN as bin.
func ParseMakeBuild(makefile string) (map[string]string, error) {
	out := map[string]string{}
	in := false
	re := regexp.MustCompile(`-o \$\(BIN\)/(\S+) (\./\S+)`)
	for _, l := range strings.Split(makefile, "\n") {
		switch {
		case strings.HasPrefix(l, "build:"):
			in = true
		case in && strings.HasPrefix(l, "\t"):
			if m := re.FindStringSubmatch(l); m != nil {
				out["bin/"+m[1]] = m[2]
			}
		case in:
			in = false
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("Makefile: no `-o $(BIN)/<name> <package>` lines under build:")
	}
	return out, nil
}
