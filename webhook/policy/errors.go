package policy

import (
	"errors"
	"sort"
	"strings"
)

// fieldErrors collects "path: message" problems so a policy author sees all
// of them at once, in a stable order.
type fieldErrors []string

func (e *fieldErrors) add(path, msg string) { *e = append(*e, path+": "+msg) }

// addErr adds err under path: the entries of a nested fieldErrors get path
// as a prefix of their own paths; any other error becomes "path: message".
func (e *fieldErrors) addErr(path string, err error) {
	if err == nil {
		return
	}
	var nested fieldErrors
	if errors.As(err, &nested) {
		for _, line := range nested {
			*e = append(*e, path+"."+line)
		}
		return
	}
	e.add(path, err.Error())
}

func (e fieldErrors) Error() string { return strings.Join(e, "\n") }

func (e fieldErrors) err() error {
	if len(e) == 0 {
		return nil
	}
	sort.Strings(e)
	return e
}
