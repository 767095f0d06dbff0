package webhook

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidecar-injector/injector/webhook/inject"
)

// Metrics are the injector's own metrics, beside controller-runtime's
// webhook metrics in the same registry.
type Metrics struct {
	injections *prometheus.CounterVec
	// ConfigReloads counts configuration loads by outcome.
	ConfigReloads *prometheus.CounterVec
	// ConfigValid is 1 while the last load succeeded, 0 after a failure.
	ConfigValid prometheus.Gauge
}

// NewMetrics registers the metrics with reg. Labels are result and reason
// only: namespaces and pod names would make the series unbounded.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		injections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_injections_total",
			Help: "Pod admissions by result (injected, skipped, refused) and stable reason.",
		}, []string{"result", "reason"}),
		ConfigReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_config_loads_total",
			Help: "Configuration loads by result (success, failure).",
		}, []string{"result"}),
		ConfigValid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_injector_config_valid",
			Help: "1 when the last configuration load succeeded, 0 when it failed and the previous configuration stays in force.",
		}),
	}
	// A second server in one process (tests, the demo) shares the
	// collectors already registered instead of failing.
	var err error
	if m.injections, err = register(reg, m.injections); err != nil {
		return nil, err
	}
	if m.ConfigReloads, err = register(reg, m.ConfigReloads); err != nil {
		return nil, err
	}
	if m.ConfigValid, err = register(reg, m.ConfigValid); err != nil {
		return nil, err
	}
	// Every known series starts at zero, so rate() and alerts work from the
	// first scrape.
	for _, r := range inject.AllReasons {
		m.injections.WithLabelValues(string(r.Result), string(r.Reason))
	}
	return m, nil
}

// Observe counts one admission.
func (m *Metrics) Observe(result inject.Result, reason inject.Reason) {
	m.injections.WithLabelValues(string(result), string(reason)).Inc()
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}
