package extract

// derived returns src with Raw made by src.Derive, if src has a Derive
// function and no Raw yet. A Derive error is reported as a *ChecksumError
// naming the asset: the bytes it was to be derived from did not decode.
func derived(src Source) (Source, error) {
	if src.Raw != nil || src.Derive == nil {
		return src, nil
	}
	raw, err := src.Derive()
	if err != nil {
		return src, &ChecksumError{Name: src.Name, WantSHA256: src.SHA256, WantSize: src.Size, Err: err}
	}
	src.Raw = raw
	return src, nil
}
