// RFC 5424 STRUCTURED-DATA text, `[id name="value" ...][id2 ...]`, split into elements for
// display. Values may escape `"`, `\` and `]` with a backslash (RFC 5424 section 6.3.3).

export interface SdElement {
  id: string;
  params: [string, string][];
}

/** The elements, or null when the text is not well-formed (it is then shown raw). */
export function parseStructuredData(text: string): SdElement[] | null {
  const elements: SdElement[] = [];
  let i = 0;
  const name = () => {
    const start = i;
    while (i < text.length && !" =]\"".includes(text[i]!)) i++;
    return text.slice(start, i);
  };
  while (i < text.length) {
    if (text[i] !== "[") return null;
    i++;
    const id = name();
    if (!id) return null;
    const params: [string, string][] = [];
    while (text[i] === " ") {
      i++;
      const key = name();
      if (!key || text[i] !== "=" || text[i + 1] !== '"') return null;
      i += 2;
      let value = "";
      while (i < text.length && text[i] !== '"') {
        if (text[i] === "\\" && i + 1 < text.length && '"\\]'.includes(text[i + 1]!)) i++;
        value += text[i];
        i++;
      }
      if (text[i] !== '"') return null;
      i++;
      params.push([key, value]);
    }
    if (text[i] !== "]") return null;
    i++;
    elements.push({ id, params });
  }
  return elements;
}
