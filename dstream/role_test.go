package dstream

import "testing"

func TestRole(t *testing.T) {
	for _, tc := range []struct {
		env      string
		role     ProcessRole
		isDriver bool
	}{
		{"", RoleLocal, true},
		{"driver", RoleDriver, true},
		{"executor", RoleExecutor, false},
	} {
		t.Setenv("SLUICE_ROLE", tc.env)
		if got := Role(); got != tc.role || IsDriver() != tc.isDriver {
			t.Errorf("SLUICE_ROLE=%q: Role() = %v, IsDriver() = %v; want %v, %v", tc.env, got, IsDriver(), tc.role, tc.isDriver)
		}
		if Role().String() != map[string]string{"": "local", "driver": "driver", "executor": "executor"}[tc.env] {
			t.Errorf("SLUICE_ROLE=%q: %q", tc.env, Role().String())
		}
	}
}
