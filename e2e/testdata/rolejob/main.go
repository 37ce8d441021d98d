// Command rolejob records, in files under --marks, which process ran which
// part of it: main (with its working directory), a transformation, an
// output function. The e2e tests check what runs where in a cluster.
package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sluicehq/sluice/dstream"
	"github.com/sluicehq/sluice/rdd"
)

func main() {
	ctx, err := dstream.New(dstream.Config{AppName: "rolejob", BatchInterval: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	marks := ctx.Flags().String("marks", "", "directory for the marks (absolute)")
	if err := ctx.ParseFlags(os.Args[1:], os.Stderr); err != nil {
		log.Fatal(err)
	}
	mark := func(what string) {
		cwd, _ := os.Getwd()
		name := fmt.Sprintf("%s-%s-%v-%d", what, dstream.Role(), dstream.IsDriver(), os.Getpid())
		os.WriteFile(filepath.Join(*marks, name), []byte(cwd), 0o644)
	}
	mark("main")
	var once sync.Once
	nums := dstream.Map(dstream.Rate(ctx, 100), func(i int64) int64 {
		once.Do(func() { mark("task") })
		return i
	})
	var outOnce sync.Once
	dstream.ForeachRDD(nums, func(b *dstream.Batch, r *rdd.RDD[int64]) error {
		all, err := dstream.Collect(b, r)
		if err != nil {
			return err
		}
		outOnce.Do(func() { mark("output") })
		fmt.Printf("batch %s: %d\n", b.Time().UTC().Format(time.TimeOnly), len(all))
		return nil
	})
	dstream.Main(ctx)
}
