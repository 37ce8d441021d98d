package dstream

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/sluicehq/sluice/internal/ui"
	"github.com/sluicehq/sluice/internal/ui/uitest"
	"github.com/sluicehq/sluice/rdd"
)

// TestUIInBrowser opens the jobs list, the streaming page and a batch page
// of a running local job (stateful, with --checkpoint) in headless
// Chromium: the charts draw a point per batch and redraw as batches run,
// the checkpoint cards show the API's checkpoint, a batch link opens the
// batch, no page script fails, and each page is saved as a screenshot (in
// $SLUICE_UI_SHOTS, or a new temp dir; the paths are logged).
func TestUIInBrowser(t *testing.T) {
	br := uitest.NewBrowser(t)
	ctx := br.Ctx
	base, _, stop := runUIJobGraph(t, 9, func(in *DStream[int64]) {
		kv := Map(in, func(v int64) KV[int64, int64] { return KV[int64, int64]{Key: v % 4, Value: 1} })
		counts := UpdateStateByKey(kv, "counts", func(vs []int64, s int64, _ bool) (int64, bool) { return s + int64(len(vs)), true })
		ForeachRDD(counts, func(b *Batch, r *rdd.RDD[KV[int64, int64]]) error {
			_, err := Collect(b, r)
			return err
		})
	}, "--checkpoint="+t.TempDir(), "--checkpoint-interval=100ms")
	jobURL := base + "/api/v1/jobs/ui_job"
	waitBatches(t, jobURL, 5)
	shot := func(name string) chromedp.Action[chromedp.Void] { return br.Shot(t, name) }

	// The jobs list links to the job.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(uitest.CSS(`#jobs a.job`)),
		shot("jobs.png"),
	); err != nil {
		t.Fatalf("jobs list: %v", err)
	}
	jobsText, err := chromedp.Run(ctx, chromedp.Text(uitest.CSS(`#jobs`)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(jobsText, "ui job") || !strings.Contains(jobsText, "running") {
		t.Fatalf("jobs list shows %q: want the job and its state", jobsText)
	}

	// The streaming page: four timelines with a point per batch.
	if err := chromedp.Do(ctx,
		uitest.Click(`#jobs a.job`),
		chromedp.WaitVisible(uitest.CSS(`.chart svg.timeline circle.pt`)),
		chromedp.WaitVisible(uitest.CSS(`#batches a.batch`)),
		shot("streaming.png"),
	); err != nil {
		t.Fatalf("streaming page: %v", err)
	}
	counts, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`[...document.querySelectorAll('.chart svg.timeline')].map(s => s.querySelectorAll('circle.pt').length)`))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := chromedp.Run(ctx, chromedp.Evaluate[[]int64](`[...document.querySelectorAll('.chart svg.timeline')].flatMap(s => [...s.querySelectorAll('circle.pt')].map(c => Number(c.dataset.batch)))`))
	if err != nil {
		t.Fatal(err)
	}
	var page ui.BatchPage
	getJSON(t, jobURL+"/batches?limit=1000", &page)
	known := map[int64]bool{}
	for _, b := range page.Batches {
		known[b.ID] = true
	}
	if len(counts) != 4 {
		t.Fatalf("%d timelines, want 4 (input rate, scheduling delay, processing time, total delay)", len(counts))
	}
	for _, n := range counts {
		if n < 5 || n != counts[0] {
			t.Fatalf("timeline points %v: want the same count, at least 5 (the batches that ran), in each", counts)
		}
	}
	for _, id := range ids {
		if !known[id] {
			t.Fatalf("the chart draws batch %d, which the API does not list", id)
		}
	}
	// The checkpoint cards: the last batch checkpointed, its age and
	// sizes, and the newest state snapshot, as the API has them.
	cards, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](
		`Object.fromEntries([...document.querySelectorAll('#checkpoint .card')].map(c => [c.id, c.querySelector('b').textContent]))`))
	if err != nil {
		t.Fatal(err)
	}
	var j ui.Job
	getJSON(t, jobURL, &j)
	clock := regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d\d\d$`)
	if j.Checkpoint == nil || j.Checkpoint.Snapshot == nil {
		t.Fatalf("the API shows no checkpoint with a snapshot: %+v", j.Checkpoint)
	}
	if !clock.MatchString(cards["ckpt-batch"]) || !regexp.MustCompile(`^[0-9.hm ]+(ms|s)$`).MatchString(cards["ckpt-age"]) ||
		!strings.HasSuffix(cards["ckpt-meta"], " B") || !strings.Contains(cards["ckpt-snapshot"], " ago") ||
		!regexp.MustCompile(`^[0-9.]+ (B|KiB|MiB)$`).MatchString(cards["ckpt-snapshot-size"]) || cards["ckpt-generation"] == "" {
		t.Fatalf("checkpoint cards %q: want the last batch checkpointed, its age, generation and sizes, and the snapshot", cards)
	}
	if g, err := strconv.ParseUint(strings.ReplaceAll(cards["ckpt-generation"], ",", ""), 10, 64); err != nil || g == 0 || g > j.Checkpoint.Generation {
		t.Fatalf("checkpoint generation card %q (%v): want 1..%d, the API's generation after the page drew", cards["ckpt-generation"], err, j.Checkpoint.Generation)
	}

	// The page refreshes itself: new batches appear without a reload.
	for deadline := time.Now().Add(30 * time.Second); ; {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('.chart svg.timeline')[0].querySelectorAll('circle.pt').length`))
		if err != nil {
			t.Fatal(err)
		}
		if n > counts[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the streaming page still draws %d points after 30s: it does not refresh", n)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A batch link opens its batch page with its stages.
	href, err := chromedp.Run(ctx, chromedp.AttributeValue(uitest.CSS(`#batches a.batch`), "href"))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		uitest.Click(`#batches a.batch`),
		chromedp.WaitVisible(uitest.CSS(`#stages tr.stage`)),
		shot("batch.png"),
	); err != nil {
		t.Fatalf("batch page: %v", err)
	}
	hash, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.hash`))
	if err != nil {
		t.Fatal(err)
	}
	title, err := chromedp.Run(ctx, chromedp.Text(uitest.CSS(`#batch-title`)))
	if err != nil {
		t.Fatal(err)
	}
	stages, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#stages tr.stage').length`))
	if err != nil {
		t.Fatal(err)
	}
	if hash != href.Value || !strings.Contains(hash, "/batches/") || stages == 0 {
		t.Fatalf("after clicking %q: at %q with %d stage rows", href.Value, hash, stages)
	}
	id, err := strconv.ParseInt(hash[strings.LastIndex(hash, "/")+1:], 10, 64)
	if err != nil {
		t.Fatalf("batch link %q: %v", hash, err)
	}
	want := time.UnixMilli(id).UTC().Format("2006-01-02T15:04:05.000Z")
	if !strings.Contains(title, want) {
		t.Fatalf("batch page title %q, want the batch time %s", title, want)
	}
	// Errors are checked before the job stops: the page keeps refreshing,
	// and its calls to a stopped server fail.
	br.CheckErrors(t)
	stop()
}

// TestUIInBrowserTenThousandBatches opens the streaming page of a job that
// ran 10,000 batches and keeps them all: the timelines draw the last 300,
// the table shows 50, and its "older" link pages back.
func TestUIInBrowserTenThousandBatches(t *testing.T) {
	br := uitest.NewBrowser(t)
	ctx := br.Ctx
	const n = 10_000
	srv, zero := syntheticUI(t, n, n)
	base := "http://" + srv.Addr()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/#/jobs/big"),
		chromedp.WaitVisible(uitest.CSS(`.chart svg.timeline circle.pt`)),
		chromedp.WaitVisible(uitest.CSS(`#batches a.batch`)),
		br.Shot(t, "streaming-10000.png"),
	); err != nil {
		t.Fatalf("streaming page: %v", err)
	}
	counts, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`[...document.querySelectorAll('.chart svg.timeline')].map(s => s.querySelectorAll('circle.pt').length)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 4 || counts[0] != 300 || counts[3] != 300 {
		t.Fatalf("timeline points %v: want 300 in each of 4", counts)
	}
	first := func() int64 {
		href, err := chromedp.Run(ctx, chromedp.AttributeValue(uitest.CSS(`#batches a.batch`), "href"))
		if err != nil {
			t.Fatal(err)
		}
		id, err := strconv.ParseInt(href.Value[strings.LastIndex(href.Value, "/")+1:], 10, 64)
		if err != nil {
			t.Fatalf("batch link %q: %v", href.Value, err)
		}
		return id
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#batches a.batch').length`))
	if err != nil {
		t.Fatal(err)
	}
	if rows != 50 || first() != zero.Add(n*time.Second).UnixMilli() {
		t.Fatalf("table: %d rows from %d, want 50 from the newest batch", rows, first())
	}
	// Clicked in the page's script: the live refresh may redraw the pager
	// between finding a node and clicking it, which a click by node id
	// reports as "Could not find node with given id".
	clicked, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const a = document.querySelector('.pager a'); if (!a) return false; a.click(); return true })()`))
	if err != nil || !clicked {
		t.Fatalf("older: no pager link (%v)", err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; { // "newer" and "older" links
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('.pager a').length`))
		if err != nil {
			t.Fatalf("older: %v", err)
		}
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("older: the pager shows %d links, want newer and older", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	want := zero.Add((n - 50) * time.Second).UnixMilli()
	for deadline := time.Now().Add(30 * time.Second); first() != want; {
		if time.Now().After(deadline) {
			t.Fatalf("after \"older\": the table starts at %d, want %d (the 51st newest)", first(), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	br.CheckErrors(t)
}
