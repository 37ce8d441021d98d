// Package ratecontrol is backpressure for sources that decide their batches
// in the driver (see dstream.PlannedSource): Spark Streaming's PID rate
// estimator, which sets the rate from the figures of each finished batch,
// and the split of a batch's allowed records across partitions by lag.
//
// The estimator follows Spark's PIDRateEstimator. After each batch with
// records it measures the processing rate (records / processing time) and
// sets
//
//	error          = latestRate - processingRate
//	historicalErr  = schedulingDelay * processingRate / batchInterval
//	dError         = (error - latestError) / secondsSinceLastUpdate
//	newRate        = max(latestRate - P*error - I*historicalErr - D*dError, MinRate)
//
// so the rate converges to what the job processes in one interval, and a
// backlog in the scheduling queue (historical error) pushes it below that
// until the queue drains.
package ratecontrol

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Config configures a Controller. Zero values mean defaults.
type Config struct {
	// BatchInterval is the job's batch interval; required, > 0.
	BatchInterval time.Duration
	// InitialRate (records/s over all partitions) bounds the batches
	// planned before the estimator has a rate: the first batches and the
	// catch-up after downtime. Default 0: the first batch is bounded only
	// by MaxRatePerPartition.
	InitialRate float64
	// MaxRatePerPartition (records/s) bounds every partition, with or
	// without backpressure. Default 0: no bound.
	MaxRatePerPartition float64
	// Backpressure enables the PID estimator. Without it only the fixed
	// rates above apply.
	Backpressure bool
	// Proportional, Integral and Derivative are the PID gains. Defaults
	// (Spark's): 1.0, 0.2 and 0. A negative value means a gain of zero.
	Proportional, Integral, Derivative float64
	// MinRate (records/s) is the estimator's floor. Default 100.
	MinRate float64
}

func (c *Config) validate() error {
	if c.BatchInterval <= 0 {
		return fmt.Errorf("ratecontrol: BatchInterval %v: must be > 0 (the job's batch interval)", c.BatchInterval)
	}
	if c.InitialRate < 0 || c.MaxRatePerPartition < 0 || c.MinRate < 0 {
		return fmt.Errorf("ratecontrol: InitialRate %v, MaxRatePerPartition %v, MinRate %v: rates must be >= 0 (0 means the default)",
			c.InitialRate, c.MaxRatePerPartition, c.MinRate)
	}
	if c.Proportional == 0 {
		c.Proportional = 1.0
	}
	if c.Integral == 0 {
		c.Integral = 0.2
	}
	c.Proportional = max(0, c.Proportional)
	c.Integral = max(0, c.Integral)
	c.Derivative = max(0, c.Derivative)
	if c.MinRate == 0 {
		c.MinRate = 100
	}
	return nil
}

// PID is Spark's PID rate estimator. It is not safe for concurrent use;
// Controller serialises it.
type PID struct {
	interval         time.Duration
	p, i, d, minRate float64
	init             bool
	latestTime       time.Time
	latestRate       float64
	latestError      float64
}

// NewPID makes an estimator with the given interval and gains.
func NewPID(interval time.Duration, p, i, d, minRate float64) *PID {
	return &PID{interval: interval, p: p, i: i, d: d, minRate: minRate, init: true}
}

// Compute takes the figures of the batch at time t and returns the new rate
// in records/s, or false when the batch says nothing (no records, no
// processing time, not newer than the last one, or the first batch, which
// only sets the starting point).
func (e *PID) Compute(t time.Time, records int64, processing, scheduling time.Duration) (float64, bool) {
	if !t.After(e.latestTime) || records <= 0 || processing <= 0 {
		return 0, false
	}
	delaySinceUpdate := t.Sub(e.latestTime).Seconds()
	processingRate := float64(records) / processing.Seconds()
	err := e.latestRate - processingRate
	historicalError := scheduling.Seconds() * processingRate / e.interval.Seconds()
	dError := (err - e.latestError) / delaySinceUpdate
	newRate := max(e.latestRate-e.p*err-e.i*historicalError-e.d*dError, e.minRate)
	e.latestTime = t
	if e.init {
		e.latestRate = processingRate
		e.latestError = 0
		e.init = false
		return 0, false
	}
	e.latestRate = newRate
	e.latestError = err
	return newRate, true
}

// Controller decides how many records each partition may contribute to a
// batch. It is safe for concurrent use: the driver plans batches in one
// goroutine and reports finished ones in another.
type Controller struct {
	cfg  Config
	mu   sync.Mutex
	pid  *PID
	rate float64 // latest estimate, 0 before the first
}

// New makes a controller.
func New(cfg Config) (*Controller, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Controller{cfg: cfg}
	if cfg.Backpressure {
		c.pid = NewPID(cfg.BatchInterval, cfg.Proportional, cfg.Integral, cfg.Derivative, cfg.MinRate)
	}
	return c, nil
}

// Update feeds the figures of a finished batch to the estimator.
func (c *Controller) Update(t time.Time, records int64, processing, scheduling time.Duration) {
	if c.pid == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.pid.Compute(t, records, processing, scheduling); ok {
		c.rate = r
	}
}

// Rate returns the rate (records/s over all partitions) the next batch is
// planned with: the estimate, else the initial rate; 0 means unbounded.
func (c *Controller) Rate() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rate > 0 {
		return c.rate
	}
	return c.cfg.InitialRate
}

// Allow returns, for each partition's lag (records available), the most
// records it may contribute to the next batch, as Spark's direct Kafka
// stream does: the rate is split across partitions in proportion to their
// lag, each share capped by MaxRatePerPartition, times the batch interval,
// at least one record per partition with lag. A result of -1 means
// unbounded (no rate applies).
func (c *Controller) Allow(lags []int64) []int64 {
	rate := c.Rate()
	out := make([]int64, len(lags))
	var total int64
	for _, l := range lags {
		total += max(0, l)
	}
	secs := c.cfg.BatchInterval.Seconds()
	for i, l := range lags {
		l = max(0, l)
		limit := c.cfg.MaxRatePerPartition // records/s for this partition; 0 = none
		if rate > 0 {
			share := 0.0
			if total > 0 {
				share = float64(l) / float64(total) * rate
			}
			if limit > 0 {
				limit = math.Min(limit, share)
			} else {
				limit = share
			}
		}
		if limit <= 0 && rate <= 0 {
			out[i] = -1
			continue
		}
		out[i] = max(int64(math.Round(limit*secs)), 1)
	}
	return out
}
