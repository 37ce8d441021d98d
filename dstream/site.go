package dstream

import "github.com/sluicehq/sluice/rdd"

// callSite returns the file:line of the user code that defined an
// operator, "?" if there is none.
func callSite() string {
	if s := rdd.CallSite(); s != "" {
		return s
	}
	return "?"
}
