// Placeholder: the demo page's script is merged separately.
import "./huddle.js";
const config = await (await fetch("/config.json")).json();
document.getElementById("status").textContent = `server: ${config.webtransport_url}`;
