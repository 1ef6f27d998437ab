//! Splitting a datagram into lines, shared by the statsd and Influx parsers.

/// The non-empty lines of a datagram, without their LF or CRLF, each with its text when
/// it is UTF-8. Shared by the statsd and Influx parsers.
#[derive(Clone, Debug)]
pub(crate) struct DatagramLines<'a> {
    datagram: &'a [u8],
    /// The datagram as text when all of it is UTF-8, which spares a check per line.
    whole_text: Option<&'a str>,
    position: usize,
}

impl<'a> DatagramLines<'a> {
    pub(crate) fn new(datagram: &'a [u8]) -> Self {
        Self { datagram, whole_text: std::str::from_utf8(datagram).ok(), position: 0 }
    }
}

impl<'a> Iterator for DatagramLines<'a> {
    type Item = (&'a [u8], Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.datagram.get(self.position..)?;
            if rest.is_empty() {
                return None;
            }
            let start = self.position;
            let end = memchr::memchr(b'\n', rest).map_or(self.datagram.len(), |at| start + at);
            self.position = end + 1;
            let mut line = &self.datagram[start..end];
            let mut text_end = end;
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
                text_end -= 1;
            }
            if line.is_empty() {
                continue;
            }
            let text = match self.whole_text {
                Some(whole) => whole.get(start..text_end),
                None => std::str::from_utf8(line).ok(),
            };
            return Some((line, text));
        }
    }
}
