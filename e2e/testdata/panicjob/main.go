// Command panicjob is a job whose map function panics on one value of its
// first batch, so that the batch fails after every task attempt. The e2e
// tests run it to check that a failed batch exits 1 and that the error
// names the operator, the batch and the number of attempts.
package main

import (
	"fmt"
	"log"
	"time"

	"github.com/sluicehq/sluice/dstream"
)

// poison is the value the map function panics on; Rate's first batch holds
// the values [0, 10).
const poison = 7

func main() {
	ctx, err := dstream.New(dstream.Config{AppName: "panicjob", BatchInterval: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	nums := dstream.Rate(ctx, 10)
	labels := dstream.Map(nums, func(v int64) string { // e2e: the panicking map
		if v == poison {
			panic(fmt.Sprintf("poison value %d", v))
		}
		return fmt.Sprint("value ", v)
	})
	dstream.Print(labels, 20)
	dstream.Main(ctx)
}
