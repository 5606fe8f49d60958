package zookeeper

// SetTrace has f told of each read ("exists") and transaction ("multi")
// of t's Revert.
func SetTrace(t *Trigger, f func(op string)) { t.trace = f }
