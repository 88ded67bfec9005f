package event

// Exported for the external tests (mix_test.go), which use
// internal/loadgen; loadgen imports this package.
var (
	OracleDecode      = oracleDecode
	CompareDecoders   = compareDecoders
	DifferentialSeeds = differentialSeeds
)
