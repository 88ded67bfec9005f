package incident

import "time"

// NIS2 holds the reporting deadlines of Directive (EU) 2022/2555, art. 23,
// for an incident of an entity in its scope (the entity document's nis2
// flag): an early warning within 24 hours of becoming aware of a
// significant incident, an incident notification within 72 hours, and a
// final report within one month of the notification. The clock starts
// when the CSIRT became aware (the incident's creation, unless an analyst
// sets another time); whether the incident is significant is the
// analysts' call, so the timers are shown for every incident of an
// entity in scope until they are marked sent or the incident is closed as
// not significant.
type NIS2 struct {
	AwareAt          time.Time
	EarlyWarningDue  time.Time
	NotificationDue  time.Time
	FinalReportDue   time.Time
	EarlyWarningSent time.Time // zero until sent
	NotificationSent time.Time
	FinalReportSent  time.Time
}

// NIS2 deadlines.
const (
	EarlyWarningWithin = 24 * time.Hour
	NotificationWithin = 72 * time.Hour
)

// NewNIS2 starts the timers at aware.
func NewNIS2(aware time.Time) *NIS2 {
	n := &NIS2{AwareAt: aware.UTC()}
	n.recompute()
	return n
}

// recompute derives the due times: the final report is due one calendar
// month after the notification was sent, or after it is due while it is
// not sent yet.
func (n *NIS2) recompute() {
	n.EarlyWarningDue = n.AwareAt.Add(EarlyWarningWithin)
	n.NotificationDue = n.AwareAt.Add(NotificationWithin)
	base := n.NotificationDue
	if !n.NotificationSent.IsZero() {
		base = n.NotificationSent
	}
	n.FinalReportDue = base.AddDate(0, 1, 0)
}

// SetAware moves the start of the clock (an analyst's correction).
func (n *NIS2) SetAware(t time.Time) { n.AwareAt = t.UTC(); n.recompute() }

// Report names one of the three NIS2 reports.
type Report string

// The reports.
const (
	ReportEarlyWarning Report = "early_warning"
	ReportNotification Report = "notification"
	ReportFinal        Report = "final_report"
)

// MarkSent records that a report was submitted at t.
func (n *NIS2) MarkSent(r Report, t time.Time) {
	switch r {
	case ReportEarlyWarning:
		n.EarlyWarningSent = t.UTC()
	case ReportNotification:
		n.NotificationSent = t.UTC()
	case ReportFinal:
		n.FinalReportSent = t.UTC()
	}
	n.recompute()
}

// Deadline is one pending report and when it is due.
type Deadline struct {
	Report  Report
	Due     time.Time
	Overdue bool
}

// Pending lists the reports not sent yet, earliest first, marking those
// past due at now.
func (n *NIS2) Pending(now time.Time) []Deadline {
	var out []Deadline
	add := func(r Report, due, sent time.Time) {
		if sent.IsZero() {
			out = append(out, Deadline{Report: r, Due: due, Overdue: now.After(due)})
		}
	}
	add(ReportEarlyWarning, n.EarlyWarningDue, n.EarlyWarningSent)
	add(ReportNotification, n.NotificationDue, n.NotificationSent)
	add(ReportFinal, n.FinalReportDue, n.FinalReportSent)
	return out
}
