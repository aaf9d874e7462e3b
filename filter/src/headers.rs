//! Reading the request headers in one host call without an allocation per header.
//!
//! `proxy_get_header_map_pairs` hands the guest one buffer (allocated through the
//! module's own allocator) in the Proxy-Wasm serialization: a little-endian `u32`
//! count, then a `u32` name length and a `u32` value length per pair, then each name
//! and value followed by a NUL. The SDK's `get_map_bytes` copies that into a `String`
//! and a `Vec` per header; [`Pairs`] walks the buffer in place instead.

/// The header pairs of one serialized map, borrowed from its buffer.
pub struct Pairs<'a> {
    buf: &'a [u8],
    /// Where the next pair's two lengths are.
    sizes: usize,
    /// Where the next pair's name starts.
    data: usize,
    left: u32,
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl<'a> Pairs<'a> {
    /// `None` if the buffer is too short for the count it announces. An empty buffer is
    /// an empty map (what the host returns for one).
    pub fn new(buf: &'a [u8]) -> Option<Pairs<'a>> {
        if buf.is_empty() {
            return Some(Pairs { buf, sizes: 0, data: 0, left: 0 });
        }
        let left = u32_at(buf, 0)?;
        let data = (left as usize).checked_mul(8)?.checked_add(4)?;
        (data <= buf.len()).then_some(Pairs { buf, sizes: 4, data, left })
    }
}

impl<'a> Iterator for Pairs<'a> {
    /// `Err(())` once if the buffer is malformed; nothing after it.
    type Item = Result<(&'a [u8], &'a [u8]), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let pair = (|| {
            let name_len = u32_at(self.buf, self.sizes)? as usize;
            let value_len = u32_at(self.buf, self.sizes + 4)? as usize;
            let name_end = self.data.checked_add(name_len)?;
            let value_start = name_end.checked_add(1)?;
            let value_end = value_start.checked_add(value_len)?;
            let name = self.buf.get(self.data..name_end)?;
            let value = self.buf.get(value_start..value_end)?;
            if self.buf.get(name_end) != Some(&0) || self.buf.get(value_end) != Some(&0) {
                return None;
            }
            self.sizes += 8;
            self.data = value_end + 1;
            Some((name, value))
        })();
        match pair {
            Some(p) => {
                self.left -= 1;
                Some(Ok(p))
            }
            None => {
                self.left = 0;
                Some(Err(()))
            }
        }
    }
}

/// The request's headers in one host call, as the buffer the host allocated for them.
#[cfg(target_arch = "wasm32")]
pub fn request_headers() -> Option<Vec<u8>> {
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_pairs(map_type: u32, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
    }
    const HTTP_REQUEST_HEADERS: u32 = 0;
    const OK: u32 = 0;
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer to `size` bytes it allocated through this
    // module's `proxy_on_memory_allocate` (the SDK's: a `Vec<u8>` of exactly that
    // capacity, leaked), so taking it back as such a `Vec` is how the SDK frees it too.
    unsafe {
        if proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS, &mut data, &mut size) != OK {
            return None;
        }
        if data.is_null() {
            return Some(Vec::new());
        }
        Some(Vec::from_raw_parts(data, size, size))
    }
}

/// Outside Wasm (host builds of the filter for tests and profiling) there is no host.
#[cfg(not(target_arch = "wasm32"))]
pub fn request_headers() -> Option<Vec<u8>> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend((k.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend(k.as_bytes());
            out.push(0);
            out.extend(v.as_bytes());
            out.push(0);
        }
        out
    }

    #[test]
    fn walks_the_serialized_map_in_place() {
        let pairs = [(":method", "GET"), (":path", "/api/v1/objects/42"), ("authorization", "Bearer a.b.c"), ("x-empty", "")];
        let buf = serialize(&pairs);
        let got: Vec<(&[u8], &[u8])> = Pairs::new(&buf).unwrap().map(Result::unwrap).collect();
        let want: Vec<(&[u8], &[u8])> = pairs.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())).collect();
        assert_eq!(got, want);
        assert_eq!(Pairs::new(&[]).unwrap().count(), 0);
        assert_eq!(Pairs::new(&serialize(&[])).unwrap().count(), 0);
    }

    #[test]
    fn malformed_buffers_end_in_one_error() {
        let good = serialize(&[(":method", "GET"), (":path", "/x")]);
        // Truncated anywhere: either refused up front or an error instead of a pair.
        for cut in 1..good.len() {
            if let Some(pairs) = Pairs::new(&good[..cut]) {
                let items: Vec<_> = pairs.collect();
                assert!(items.last().is_some_and(Result::is_err), "cut at {cut}: {items:?}");
                assert_eq!(items.iter().filter(|i| i.is_err()).count(), 1);
            }
        }
        // A count far larger than the buffer.
        assert!(Pairs::new(&[0xff, 0xff, 0xff, 0xff, 0, 0]).is_none());
        // Lengths that overflow, and a missing NUL terminator.
        let mut bad = good.clone();
        bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Pairs::new(&bad).unwrap().next().unwrap().is_err());
        let mut no_nul = good.clone();
        let first_nul = 4 + 16 + ":method".len();
        no_nul[first_nul] = b'x';
        assert!(Pairs::new(&no_nul).unwrap().next().unwrap().is_err());
    }
}
