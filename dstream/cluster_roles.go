package dstream

const (
	roleLocal    = ""
	roleDriver   = "driver"
	roleExecutor = "executor"
)

// resolver finds tasks' jobs in an executor's copy of the graph (cluster.go).
type resolver struct{}

// clusterCheck refuses, when the job runs in a cluster role, the parts of a
// graph that cluster mode does not support yet.
func (c *Context) clusterCheck() error { return nil }
