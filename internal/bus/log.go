package bus

import (
	"io"

	"github.com/sirupsen/logrus"
)

// discardLogger is the default logger of clients built without one.
func discardLogger() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.SetLevel(logrus.PanicLevel)
	return l
}
