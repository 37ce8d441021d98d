package dstream

import "fmt"

// KVOf returns the pair (key, value): a short form of
// dstream.KV[K, V]{Key: key, Value: value} with the types inferred.
//
//	pairs := dstream.Map(words, func(w string) dstream.KV[string, int64] { return dstream.KVOf(w, int64(1)) })
func KVOf[K comparable, V any](key K, value V) KV[K, V] { return KV[K, V]{Key: key, Value: value} }

// PairOf returns the Pair (first, second).
func PairOf[A, B any](first A, second B) Pair[A, B] { return Pair[A, B]{First: first, Second: second} }

// ShuffleOption is an optional setting of one shuffle operator (ReduceByKey,
// GroupByKey, CombineByKey, CountByValue, the joins, CoGroup, the keyed
// window operators and UpdateStateByKey): pass it as the operator's last
// arguments. MapWithState and the event-time window take their partition
// count in their spec (Partitions).
type ShuffleOption func(*shuffleOpts)

type shuffleOpts struct {
	parts   int
	initial any // WithInitialState's pairs
	err     error
}

// Partitions sets the number of partitions of the operator's shuffle (and
// so the parallelism of its reduce side). The default is
// Config.Parallelism, or the number of task slots.
// A count <= 0 is reported by Start (and so by Run) as a graph error.
func Partitions(n int) ShuffleOption {
	return func(o *shuffleOpts) {
		o.parts = n
		if n <= 0 {
			o.err = fmt.Errorf("dstream: Partitions(%d): partition count must be > 0", n)
		}
	}
}

// numParts returns the partition count the options select for an operator
// of ctx.
func numParts(ctx *Context, opts []ShuffleOption) int {
	var o shuffleOpts
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	if o.err != nil {
		ctx.mu.Lock()
		ctx.graphErrs = append(ctx.graphErrs, fmt.Errorf("%w (at %s)", o.err, callSite()))
		ctx.mu.Unlock()
	}
	if o.parts > 0 {
		return o.parts
	}
	return ctx.Parallelism()
}

// WithInitialState sets the state of UpdateStateByKey before the first
// batch (Spark's initialRDD): every pair's key starts with its value, and
// the update function sees it (exists is true) from the first batch on.
// It is an option of UpdateStateByKey only; its types must be the
// operator's key and state types (checked by Start).
func WithInitialState[K comparable, S any](initial []KV[K, S]) ShuffleOption {
	return func(o *shuffleOpts) {
		prev, _ := o.initial.([]KV[K, S])
		o.initial = append(prev, initial...)
	}
}

// initialState returns the WithInitialState pairs among opts; pairs of
// other types are a graph error naming the operator.
func initialState[K comparable, S any](ctx *Context, op string, opts []ShuffleOption) []KV[K, S] {
	var o shuffleOpts
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	if o.initial == nil {
		return nil
	}
	init, ok := o.initial.([]KV[K, S])
	if !ok {
		ctx.mu.Lock()
		ctx.graphErrs = append(ctx.graphErrs, fmt.Errorf("dstream: %s: WithInitialState of %T, but the state is %T", op, o.initial, []KV[K, S]{}))
		ctx.mu.Unlock()
	}
	return init
}
