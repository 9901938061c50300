// Placeholder: the browser client library is merged separately.
export {};
